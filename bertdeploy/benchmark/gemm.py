"""The machine's fp32 GEMM peak, measured in the same run as the sweep, and the FLOPs a BERT encoder really
needs at the texts' true (unpadded) lengths — so each cell can report useful GFLOP/s as a share of the peak.

The peak is the best of numpy (OpenBLAS) and ONNX Runtime's MatMul kernel over a few transformer-shaped
products (tokens x hidden x intermediate); it is an *attainable* peak on this machine under its current load,
not the datasheet number.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

#: (M, K, N): M = 32 sequences x 128 tokens; K/N = MiniLM (384/1536) and BERT-base (768/3072) projections
GEMM_SHAPES: tuple[tuple[int, int, int], ...] = ((4096, 384, 1536), (4096, 1536, 384), (4096, 768, 3072))


def encoder_dims(config: Mapping[str, Any]) -> dict[str, int]:
    """``layers``, ``hidden``, ``intermediate``, ``labels`` from an HF ``config.json`` (BERT or DistilBERT names)."""

    def first(*keys: str, default: int | None = None) -> int:
        for k in keys:
            if config.get(k) is not None:
                return int(config[k])
        if default is None:
            raise KeyError(f"config.json has none of {keys}")
        return default

    hidden = first("hidden_size", "dim", "d_model")
    return {
        "layers": first("num_hidden_layers", "n_layers", "num_layers"),
        "hidden": hidden,
        "intermediate": first("intermediate_size", "hidden_dim", "ffn_dim", default=4 * hidden),
        "labels": len(config.get("id2label") or {}) or first("num_labels", default=2),
    }


def encoder_flops(dims: Mapping[str, int], lengths: Iterable[int]) -> float:
    """Multiply-add FLOPs (2 per MAC) of one forward pass over sequences of the given true lengths.

    Per layer and sequence of length l: Q/K/V/output projections 8*l*h^2, attention scores and weighted sum
    4*l^2*h, feed-forward 4*l*h*i; plus pooler + classifier 2*h^2 + 2*h*C per sequence. Embeddings, softmax,
    layer norms and GELU are ignored (memory-bound, a few percent at most).
    """
    h, i, n_layers, c = dims["hidden"], dims["intermediate"], dims["layers"], dims["labels"]
    total = 0.0
    for length in lengths:
        ln = float(length)
        total += n_layers * (8 * ln * h * h + 4 * ln * ln * h + 4 * ln * h * i) + 2 * h * h + 2 * h * c
    return total


def _best_seconds(fn, min_seconds: float, min_repeats: int = 3) -> float:
    fn()  # warm-up
    best = float("inf")
    spent = 0.0
    n = 0
    while n < min_repeats or spent < min_seconds:
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        best = min(best, dt)
        spent += dt
        n += 1
    return best


def _numpy_gemm(m: int, k: int, n: int, threads: int, seconds: float) -> float:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((m, k), dtype=np.float32)
    b = rng.standard_normal((k, n), dtype=np.float32)
    out = np.empty((m, n), dtype=np.float32)
    try:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=threads, user_api="blas"):
            return _best_seconds(lambda: np.matmul(a, b, out=out), seconds)
    except ImportError:  # pragma: no cover - threadpoolctl ships with scikit-learn
        return _best_seconds(lambda: np.matmul(a, b, out=out), seconds)


def _ort_gemm(m: int, k: int, n: int, threads: int, seconds: float) -> float:
    import onnxruntime as ort
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["c"])],
        "gemm",
        [
            helper.make_tensor_value_info("a", TensorProto.FLOAT, [m, k]),
            helper.make_tensor_value_info("b", TensorProto.FLOAT, [k, n]),
        ],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, [m, n])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feed = {
        "a": rng.standard_normal((m, k), dtype=np.float32),
        "b": rng.standard_normal((k, n), dtype=np.float32),
    }
    return _best_seconds(lambda: sess.run(None, feed), seconds)


def measure_peak(threads: int, seconds_per_shape: float = 0.5, engines: Iterable[str] = ("numpy", "onnxruntime")):
    """Best GFLOP/s of an fp32 matrix product on ``threads`` threads, per engine and shape, and the overall peak."""
    rows: list[dict[str, Any]] = []
    for engine in engines:
        fn = _numpy_gemm if engine == "numpy" else _ort_gemm
        for m, k, n in GEMM_SHAPES:
            try:
                best = fn(m, k, n, threads, seconds_per_shape)
                rows.append({"engine": engine, "shape": [m, k, n], "gflops": 2.0 * m * k * n / best / 1e9})
            except Exception as e:  # noqa: BLE001 - a missing engine must not sink the sweep
                rows.append({"engine": engine, "shape": [m, k, n], "gflops": None, "error": repr(e)[:300]})
    ok = [r["gflops"] for r in rows if r.get("gflops")]
    return {"threads": threads, "dtype": "fp32", "peak_gflops": max(ok) if ok else None, "measurements": rows}
