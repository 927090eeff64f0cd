"""End-to-end CPU throughput of bertdeploy.runtime against what users have today (issue 4, "Performance").

    python3 benchmarks/runtime/bench_runtime.py --bundle models/minilm-emotion --hf runs/minilm-emotion \
        --data ../shared/datasets/emotion/test.csv --threads 2 --repeats 3 --out benchmarks/runtime/results.json

Every engine runs in its own process (timing torch and ORT in one process inflates both). Each worker loads the
engine, warms up on 256 texts, then classifies the whole file ``--repeats`` times, end to end (raw strings in,
labels out, tokenization included); texts/s uses the best repeat (the CPU is shared: the best repeat is the one
least disturbed by other processes), the median is recorded too, with the 1-minute load average around it.

Engine specs: ``pipeline`` (transformers pipeline, PyTorch, batch 32), ``torchint8`` (the same pipeline on the
model after ``torch.ao.quantization.quantize_dynamic`` of its Linear layers), ``ortmodel:FILE`` (Optimum
ORTModelForSequenceClassification in a transformers pipeline, batch 32), ``openvino:VARIANT`` (OpenVINO on the
bundle variant's ONNX file, or ``openvino:nncf``: NNCF int8 of the fp32 file calibrated on 300 training rows; our
tokenizer and batches: ``bertdeploy.benchmark.openvino_backend``), ``bertdeploy:VARIANT:PADDING[:k=v+k=v...]``
(k in batch_size, max_tokens, streams, spinning, graph_optimization, cpu_arena, threads, gelu_approximation,
``fusions=ort``: ORT's own fusion list, i.e. SkipLayerNormFusion back on), ``peak`` (GEMM peaks).

``--data synthetic:L[:N]`` times N (default 32768 // L) texts of L/2..L tokens (``--source`` texts glued together;
needs a bundle exported with ``--max-length`` >= L) instead of a csv file. ``--latency N`` adds a batch-1 pass:
every engine predicts the first N texts one call each (p50 / p90 ms, end to end).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

from bertdeploy.variants import VARIANTS

HERE = Path(__file__).resolve()
#: the dynamic int8 file of a bundle exported now (the variant table names it; older bundles: model_qint8.onnx)
INT8_FILE = Path(VARIANTS["qint8"].file).name
DEFAULT_ENGINES = [
    "peak",
    "pipeline",
    "ortmodel:model.onnx",
    f"ortmodel:{INT8_FILE}",
    "bertdeploy:fp32:bucketed",
    "bertdeploy:fp32:bucketed:streams=1",
    "bertdeploy:O2:bucketed",
    "bertdeploy:qint8:bucketed",
    "bertdeploy:qint8:bucketed:streams=1",
    "bertdeploy:qint8_static:bucketed",
    "bertdeploy:fp32:dynamic",
    "bertdeploy:fp32:static",
    "bertdeploy:qint8:dynamic",
    "bertdeploy:qint8:static",
]


def read_data(path: str, bundle: str = "", source: str = "") -> tuple[list[str], list[str]]:
    """(texts, gold labels) of a csv, or ``synthetic:L[:N]`` texts glued from ``source`` (labels empty)."""
    if path.startswith("synthetic:"):
        _, length, *n = path.split(":")
        return synthetic_texts(bundle, source, int(length), int(n[0]) if n else None), []
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return [r["text"] for r in rows], [r["label"] for r in rows]


def synthetic_texts(bundle: str, source_csv: str, length: int, n: int | None = None, seed: int = 0) -> list[str]:
    """``n`` texts (default 32768 // length) of L/2..L tokens each, made of ``source_csv`` texts glued together."""
    import random

    from tokenizers import Tokenizer

    n = n or max(16, 32768 // length)
    tok = Tokenizer.from_file(str(Path(bundle) / "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()
    source, _ = read_data(source_csv)
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        want, words = rng.randint(length // 2, length), []
        while len(tok.encode(" ".join(words)).ids) < want:
            words += (rng.choice(source) + " .").split()
        while len(tok.encode(" ".join(words)).ids) > want:
            words.pop()
        out.append(" ".join(words))
    return out


# ---------------------------------------------------------------------------------------------- workers
def _pipeline_predict(pipe, texts: list[str]) -> list[str]:
    return [o["label"] for o in pipe(texts, batch_size=32, truncation=True, max_length=128)]


def make_engine(spec: str, args: argparse.Namespace):
    """Return (predict(texts) -> labels, info dict)."""
    kind, _, rest = spec.partition(":")
    if kind == "pipeline":
        import torch
        from transformers import pipeline

        torch.set_num_threads(args.threads)
        pipe = pipeline("text-classification", model=args.hf, device="cpu")
        return (lambda t: _pipeline_predict(pipe, t)), {"torch": torch.__version__}
    if kind == "torchint8":
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

        from bertdeploy.benchmark.backends import torch_dynamic_int8

        torch.set_num_threads(args.threads)
        model = AutoModelForSequenceClassification.from_pretrained(args.hf, use_safetensors=True).eval()
        model = torch_dynamic_int8(model)
        pipe = pipeline("text-classification", model=model, tokenizer=AutoTokenizer.from_pretrained(args.hf))
        return (lambda t: _pipeline_predict(pipe, t)), {"torch": torch.__version__, "quantize_dynamic": "Linear"}
    if kind == "openvino":
        return _openvino_engine(rest, args)
    if kind == "ortmodel":
        import onnxruntime as ort
        from optimum.onnxruntime import ORTModelForSequenceClassification
        from transformers import AutoTokenizer, pipeline

        so = ort.SessionOptions()
        so.intra_op_num_threads = args.threads
        model = ORTModelForSequenceClassification.from_pretrained(
            args.bundle, subfolder="onnx", file_name=rest, session_options=so
        )
        pipe = pipeline("text-classification", model=model, tokenizer=AutoTokenizer.from_pretrained(args.bundle))
        return (lambda t: _pipeline_predict(pipe, t)), {"file": rest}
    if kind == "bertdeploy":
        from bertdeploy.runtime import SessionConfig, load

        parts = rest.split(":") + ["", ""]
        variant, padding, opts = parts[0], parts[1] or "bucketed", parts[2]
        kv = dict(item.split("=") for item in opts.split("+") if item)
        flag = lambda v: v == "1"  # noqa: E731
        sc_keys = {"spinning": str, "graph_optimization": str, "cpu_arena": flag, "gelu_approximation": flag}
        sc = SessionConfig(**{k: sc_keys[k](v) for k, v in kv.items() if k in sc_keys})
        if kv.get("fusions") == "ort":
            sc = replace(sc, disabled_optimizers=())
        clf = load(
            args.bundle,
            variant=variant,
            threads=int(kv.get("threads", args.threads)),
            padding=padding,
            batch_size=int(kv.get("batch_size", 64)),
            max_tokens=int(kv.get("max_tokens", 8192)),
            streams=int(kv["streams"]) if "streams" in kv else None,
            session_config=sc,
        )

        def predict(texts: list[str]) -> list[str]:
            return [p.label for p in clf.predict(texts)]

        info = {"variant": clf.variant.name, "policy": clf.policy.__dict__, "streams": clf.streams}
        return predict, info | {"session": {**sc.__dict__, "disabled_optimizers": list(sc.disabled_optimizers)}}
    raise SystemExit(f"unknown engine {spec!r}")


def _openvino_engine(variant: str, args: argparse.Namespace):
    import json as _json

    from bertdeploy.benchmark.backends import BackendContext, make_backend

    bundle = Path(args.bundle)
    manifest = _json.loads((bundle / "bertdeploy.json").read_text())
    labels = list(manifest["labels"])
    csv_file = Path(args.source if args.data.startswith("synthetic:") else args.data)
    train = csv_file.with_name("train.csv")
    calibration = read_data(str(train if train.is_file() else csv_file))[0][:300]
    max_length = int(manifest["max_length"])
    ctx = BackendContext(None, bundle, labels, max_length, variant, args.threads, "cpu", 64, calibration)
    backend = make_backend("openvino", ctx)
    info = backend.load()

    def predict(texts: list[str]) -> list[str]:
        return [labels[i] for i in backend.predict(texts, "bucketed").argmax(1).tolist()]

    return predict, info


def gemm_peaks(threads: int, seconds: float = 1.0) -> dict:
    """Best GOP/s of ORT's fp32 MatMul and its dynamic-int8 MatMul (the kernel of the qint8 variant) with a
    constant (pre-packed) weight, on MiniLM-shaped products (M tokens x 384 x 1536 and x 384 x 384)."""
    import numpy as np
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    out = {}
    rng = np.random.default_rng(0)
    for m, k, n in ((1024, 384, 1536), (2048, 384, 1536), (1024, 1536, 384), (1024, 384, 384)):
        w = rng.standard_normal((k, n)).astype(np.float32)
        x = rng.standard_normal((m, k)).astype(np.float32)
        graphs = {
            "fp32": ([helper.make_node("MatMul", ["x", "w"], ["y"])], [numpy_helper.from_array(w, "w")]),
            "int8": (
                [helper.make_node("DynamicQuantizeMatMul", ["x", "w", "s", "", ""], ["y"], domain="com.microsoft")],
                [
                    numpy_helper.from_array(rng.integers(-127, 127, (k, n)).astype(np.int8), "w"),
                    numpy_helper.from_array(np.array([0.01], np.float32), "s"),
                ],
            ),
        }
        for dtype, (nodes, inits) in graphs.items():
            g = helper.make_graph(
                nodes,
                "g",
                [helper.make_tensor_value_info("x", TensorProto.FLOAT, [m, k])],
                [helper.make_tensor_value_info("y", TensorProto.FLOAT, [m, n])],
                inits,
            )
            model = helper.make_model(
                g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
            )
            model.ir_version = 8
            so = ort.SessionOptions()
            so.intra_op_num_threads = threads
            sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
            sess.run(None, {"x": x})
            best, spent = float("inf"), 0.0
            while spent < seconds:
                t0 = time.perf_counter()
                sess.run(None, {"x": x})
                dt = time.perf_counter() - t0
                best, spent = min(best, dt), spent + dt
            gops = 2 * m * k * n / best / 1e9
            out[dtype] = max(out.get(dtype, 0.0), gops)
            out[f"{dtype} {m}x{k}x{n}"] = round(gops, 1)
    return out


def serve(spec: str, args: argparse.Namespace) -> None:
    """Worker process: load the engine, warm up, then answer the driver's commands on stdin, one JSON line each:
    "run" -> one timed pass over the whole file; "lat N" -> batch-1 latencies; "done" -> labels and accuracy.
    The protocol has file descriptor 1 to itself: everything else the engines print (NNCF progress bars, OpenVINO
    logs) goes to stderr."""
    proto = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    def print(line: str, flush: bool = True) -> None:  # noqa: A001 - the protocol's print
        proto.write(line + "\n")
        proto.flush()

    if spec == "peak":
        print(json.dumps({"ready": True}), flush=True)
        for line in sys.stdin:
            if line.strip() == "run":
                print(json.dumps({"peaks": gemm_peaks(args.threads), "load_1m": os.getloadavg()[0]}), flush=True)
            else:
                print(json.dumps({}), flush=True)
                return
        return
    texts, gold = read_data(args.data, args.bundle, args.source)
    predict, info = make_engine(spec, args)
    predict(texts[:256])
    print(json.dumps({"ready": True, "info": info}), flush=True)
    labels: list[str] = []
    for line in sys.stdin:
        if line.strip() == "run":
            load = os.getloadavg()[0]
            t0 = time.perf_counter()
            labels = predict(texts)
            print(json.dumps({"seconds": time.perf_counter() - t0, "load_1m": load}), flush=True)
        elif line.startswith("lat"):
            print(json.dumps({"latencies_ms": _latencies(predict, texts[: int(line.split()[1])])}), flush=True)
        else:
            accuracy = sum(a == b for a, b in zip(labels, gold)) / len(gold) if gold else None
            print(json.dumps({"labels": labels, "accuracy": accuracy, "texts": len(texts)}), flush=True)
            return


def _latencies(predict, texts: list[str]) -> list[float]:
    """ms per call, one text per call (an online request: tokenize, run, label)."""
    out = []
    for text in texts:
        t0 = time.perf_counter()
        predict([text])
        out.append((time.perf_counter() - t0) * 1e3)
    return out


# ---------------------------------------------------------------------------------------------- driver
def run_driver(args: argparse.Namespace) -> None:
    """Start one worker process per engine (all loaded at once, idle ones blocked on stdin), then time them in
    interleaved rounds — engine A, B, C, ..., A, B, C, ... — so that a burst of load from other processes hits
    every engine alike; each engine keeps its best round."""
    from bertdeploy.machine import machine_info, versions

    out = Path(args.out)
    engines = args.engines.split(",") if args.engines else DEFAULT_ENGINES
    common = [f"--bundle={args.bundle}", f"--hf={args.hf}", f"--data={args.data}", f"--threads={args.threads}"]
    common.append(f"--source={args.source}")
    procs = {}
    for spec in engines:
        procs[spec] = subprocess.Popen(
            [sys.executable, str(HERE), "--worker", spec, *common],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        hello = json.loads(procs[spec].stdout.readline() or "{}")
        if not hello.get("ready"):
            raise SystemExit(f"{spec}: worker failed to start")
        procs[spec].info = hello.get("info", {})  # type: ignore[attr-defined]
    rounds: dict[str, list[dict]] = {spec: [] for spec in engines}
    loads = [os.getloadavg()]
    for r in range(args.repeats):
        for spec, proc in procs.items():
            time.sleep(0.5)  # let the previous engine's worker threads stop spinning
            proc.stdin.write("run\n")
            proc.stdin.flush()
            rounds[spec].append(json.loads(proc.stdout.readline()))
        loads.append(os.getloadavg())
        print(f"round {r + 1}/{args.repeats} done, load {loads[-1][0]:.2f}", file=sys.stderr, flush=True)
    timed = [spec for spec in procs if args.latency and spec != "peak"]
    latency = {spec: _latency_pass(procs[spec], args.latency) for spec in timed}
    runs = []
    for spec, proc in procs.items():
        proc.stdin.write("done\n")
        proc.stdin.flush()
        final = json.loads(proc.stdout.readline())
        proc.wait()
        res = {"engine": spec, "info": proc.info, "rounds": rounds[spec], **final}  # type: ignore[attr-defined]
        if spec != "peak":
            secs = [x["seconds"] for x in rounds[spec]]
            res["texts_per_s"] = final["texts"] / min(secs)
            res["texts_per_s_median"] = final["texts"] / statistics.median(secs)
            res["load_at_best"] = rounds[spec][secs.index(min(secs))]["load_1m"]
            res.update(latency.get(spec, {}))
        runs.append(res)
    result = {
        "command": " ".join([Path(sys.executable).name] + sys.argv),
        "started_load": loads[0],
        "loads_after_each_round": loads[1:],
        "machine": machine_info(threads=args.threads),
        "versions": versions(),
        "threads": args.threads,
        "data": args.data,
        "source": args.source,
        "bundle": args.bundle,
        "runs": runs,
    }
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(report(result))
    for res in runs:
        if "texts_per_s" in res:
            acc = f"{res['accuracy']:.4f}" if res["accuracy"] is not None else "-"
            print(
                f"{res['engine']:55s} {res['texts_per_s']:8.1f} texts/s (median {res['texts_per_s_median']:7.1f})"
                f"  acc {acc}  load@best {res['load_at_best']:.2f}"
            )
        else:
            print(res["engine"], max(res["rounds"], key=lambda x: x["peaks"]["fp32"]))


def _latency_pass(proc: subprocess.Popen, n: int) -> dict:
    time.sleep(0.5)
    proc.stdin.write(f"lat {n}\n")
    proc.stdin.flush()
    lat = sorted(json.loads(proc.stdout.readline())["latencies_ms"])
    return {"batch1_p50_ms": statistics.median(lat), "batch1_p90_ms": lat[int(0.9 * (len(lat) - 1))], "batch1_n": n}


def _useful_flops(bundle: str, data: str, source: str = "") -> tuple[float, float]:
    """(FLOPs of one pass over the file at the texts' true token lengths, mean length)."""
    from bertdeploy.benchmark.gemm import encoder_dims, encoder_flops
    from bertdeploy.runtime import load

    clf = load(bundle, variant="fp32", threads=1)
    lengths = clf.encode(read_data(data, bundle, source)[0]).lengths.tolist()
    dims = encoder_dims(json.loads((Path(bundle) / "config.json").read_text()))
    return encoder_flops(dims, lengths), sum(lengths) / len(lengths)


def is_int8(run: dict) -> bool:
    """True for an engine computing in int8 (judged against the int8 GEMM peak)."""
    info = run.get("info", {})
    return info.get("precision") == "int8" or any(k in run["engine"] for k in ("int8", "nncf"))


def peaks_of(res: dict) -> dict[str, float]:
    """The best fp32 / int8 GEMM peaks of the run's ``peak`` rounds."""
    peaks: dict[str, float] = {}
    for r in res["runs"]:
        for rnd in r.get("rounds", []) if r["engine"] == "peak" else []:
            for k in ("fp32", "int8"):
                peaks[k] = max(peaks.get(k, 0.0), rnd["peaks"][k])
    return peaks


def report(res: dict) -> str:
    """The README.md table from a results.json."""
    runs = [r for r in res["runs"] if "texts_per_s" in r]
    by = {r["engine"]: r for r in runs}
    peaks = peaks_of(res)
    flops, mean_len = _useful_flops(res["bundle"], res["data"], res.get("source", ""))
    base = by.get("pipeline")
    lines = [
        "| engine | texts/s (best) | median | x pipeline | x ORTModel same file | useful GOP/s | % of peak "
        "| accuracy | same label as pipeline | batch-1 p50 ms | load 1m at best |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in runs:
        tps = r["texts_per_s"]
        gops = flops / (r["texts"] / tps) / 1e9
        int8 = is_int8(r)
        peak = peaks.get("int8" if int8 else "fp32")
        ort_file = INT8_FILE if int8 else "model.onnx"
        ortm = by.get(f"ortmodel:{ort_file}")
        same = sum(a == b for a, b in zip(r["labels"], base["labels"])) / len(r["labels"]) if base else None
        cells = [
            f"`{r['engine']}`",
            f"{tps:.1f}",
            f"{r['texts_per_s_median']:.1f}",
            f"{tps / base['texts_per_s']:.2f}" if base else "-",
            f"{tps / ortm['texts_per_s']:.2f}" if ortm and r["engine"].startswith("bertdeploy") else "-",
            f"{gops:.0f}",
            f"{gops / peak:.0%}" if peak else "-",
            f"{r['accuracy']:.4f}" if r.get("accuracy") is not None else "-",
            f"{same:.2%}" if same is not None else "-",
            f"{r['batch1_p50_ms']:.2f}" if r.get("batch1_p50_ms") else "-",
            f"{r['load_at_best']:.2f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    head = [
        f"- command: `{res['command']}`",
        f"- machine: {res['machine']['cpu']}, {res['machine']['logical_cpus']} logical CPUs, "
        f"features {', '.join(res['machine']['cpu_features'])}",
        "- versions: " + ", ".join(f"{k} {v}" for k, v in res["versions"].items()),
        f"- data: {res['data']} ({runs[0]['texts'] if runs else '?'} texts, mean {mean_len:.1f} tokens); "
        f"threads: {res['threads']}; bundle: {res['bundle']}",
        f"- load average (1/5/15 min) at start {res['started_load']}, after each round "
        + ", ".join(f"{x[0]:.2f}" for x in res["loads_after_each_round"]),
        f"- GEMM peaks measured in this run ({res['threads']} threads, ORT kernels, MiniLM shapes): fp32 "
        f"{peaks.get('fp32', 0):.0f} GFLOP/s, dynamic int8 {peaks.get('int8', 0):.0f} GOP/s; useful GOP/s = FLOPs "
        "at the true token lengths / end-to-end time",
    ]
    return "\n".join(head) + "\n\n" + "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", default="models/minilm-emotion", help="bertdeploy export of --hf")
    ap.add_argument("--hf", default="runs/minilm-emotion", help="the fine-tuned HF model (pipeline)")
    ap.add_argument("--data", default="../shared/datasets/emotion/test.csv")
    ap.add_argument("--source", default="../shared/datasets/emotion/test.csv", help="texts glued for synthetic:L")
    ap.add_argument("--latency", type=int, default=0, help="batch-1 pass over the first N texts (0: none)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--engines", default=None, help="comma-separated engine specs (default: the full set)")
    ap.add_argument("--out", default=str(HERE.parent / "results.json"))
    ap.add_argument("--report", default=None, help="print the markdown table of an existing results.json")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.report:
        print(report(json.loads(Path(args.report).read_text())))
    elif args.worker:
        serve(args.worker, args)
    else:
        run_driver(args)


if __name__ == "__main__":
    main()
