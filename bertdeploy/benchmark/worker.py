"""Time one block — one (target, backend, variant) — over its cells (padding x batch size), in this process.

The sweep runs each block in its own subprocess (``python -m bertdeploy.benchmark.worker JOB EVENTS``) so that
thread pools of different engines never interleave and a crash fails only that block's cells. Progress and
results are *events* (one dict each), appended as JSON lines to the events file or handed to a callback.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bertdeploy.benchmark.backends import BackendContext, Skip, make_backend
from bertdeploy.benchmark.gemm import encoder_flops
from bertdeploy.benchmark.timing import measure, summarize
from bertdeploy.machine import load_average

Emit = Callable[[dict[str, Any]], None]
EVAL_BATCH = 32


def make_batches(
    texts: list[Any],
    lengths: list[int],
    batch_size: int,
    padding: str,
    dims: dict[str, int],
    seed: int = 0,
    sequences: list[list[int]] | None = None,
) -> tuple[list[list[Any]], list[tuple[int, int, float]]]:
    """Batches of ``batch_size`` texts (records) and their (records, true tokens, useful FLOPs), cut by the runtime's
    batcher (:func:`bertdeploy.runtime.batching.plan`) with a row limit only.

    ``bucketed``: texts sorted by length, then chunked (batches of similar lengths, taken in a seeded random
    order); ``static`` / ``dynamic``: chunks of the texts in their (already random) order. Texts are repeated when
    there are fewer than ``batch_size``; a trailing partial batch is dropped. ``sequences``: per record, the lengths
    of the sequences the model runs for it (windows, choices; ``lengths`` are then their sums), for the FLOPs.
    """
    from bertdeploy.runtime.batching import BatchPolicy, plan

    order = list(range(len(texts)))
    while len(order) < batch_size:
        order += order[: batch_size - len(order)]
    rows = np.asarray([lengths[i] for i in order], dtype=np.int64)
    mode = "bucketed" if padding == "bucketed" else "dynamic"
    budget = batch_size * max(int(rows.max()), 1)  # a row limit only: no token budget, no padding bound
    policy = BatchPolicy(padding=mode, batch_size=batch_size, max_tokens=budget, max_padding=1.0)
    chunks = [[order[j] for j in idx.tolist()] for idx, _ in plan(rows, policy, int(rows.max()))]
    chunks = [c for c in chunks if len(c) == batch_size]
    if padding == "bucketed":
        random.Random(seed).shuffle(chunks)
    batches = [[texts[i] for i in c] for c in chunks]
    seqs = sequences or [[n] for n in lengths]
    sizes = [(len(c), sum(lengths[i] for i in c), encoder_flops(dims, [n for i in c for n in seqs[i]])) for c in chunks]
    return batches, sizes


def _memory() -> dict[str, float | None]:
    out: dict[str, float | None] = {"rss_mb": None, "peak_rss_mb": None}
    try:
        import psutil

        out["rss_mb"] = psutil.Process().memory_info().rss / 2**20
    except ImportError:  # pragma: no cover
        pass
    try:
        import resource

        out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    except ImportError:  # pragma: no cover - not on Windows
        pass
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            out["gpu_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def _error(e: BaseException) -> str:
    tail = traceback.format_exception(type(e), e, e.__traceback__)[-3:]
    return f"{type(e).__name__}: {e}".strip()[:500] + "\n" + "".join(tail)[-1500:]


def run_group(job: dict[str, Any], emit: Emit) -> None:
    """Load the block's backend once, score it on the evaluation texts (if asked), then time each cell."""
    ctx = BackendContext(**{**job["ctx"], "hf_dir": _path(job["ctx"]["hf_dir"]), "bundle": _path(job["ctx"]["bundle"])})
    base = {"group": job["group"]}
    cells = job["cells"]
    s = job["settings"]
    data = json.loads(Path(job["texts_file"]).read_text(encoding="utf-8"))
    ctx.calibration = data.get("calibration_texts") or []
    try:
        t0 = time.perf_counter()
        backend = make_backend(job["backend"], ctx)
        info = backend.load()
        info["load_seconds"] = time.perf_counter() - t0
    except Skip as e:
        for c in cells:
            emit({**base, "type": "cell", **c, "status": "skipped", "error": str(e)})
        return
    except Exception as e:  # noqa: BLE001 - recorded, the sweep goes on
        for c in cells:
            emit({**base, "type": "cell", **c, "status": "failed", "error": f"load: {_error(e)}"})
        return
    if s.get("eval"):
        emit({**base, "type": "eval", **_evaluate(backend, data, job, s["eval_padding"])})
    for c in cells:
        emit({**base, "type": "cell_start", "key": c["key"]})
        try:
            emit({**base, "type": "cell", **c, "status": "ok", "info": info, **_time_cell(backend, data, job, c)})
        except Skip as e:  # this engine cannot run this cell (a pipeline and static padding)
            emit({**base, "type": "cell", **c, "status": "skipped", "error": str(e), "info": info})
        except Exception as e:  # noqa: BLE001
            emit({**base, "type": "cell", **c, "status": "failed", "error": _error(e), "info": info})


def _path(p: str | None) -> Path | None:
    return Path(p) if p else None


def _evaluate(backend: Any, data: dict[str, Any], job: dict[str, Any], padding: str) -> dict[str, Any]:
    """The block's predictions of every evaluation record (saved for the agreement columns), scored with the task's
    metrics (:mod:`bertdeploy.benchmark.scoring`) when the records are labelled."""
    from bertdeploy.benchmark import scoring

    texts = data["eval_texts"]
    task = job["ctx"].get("task") or "text-classification"
    try:
        t0 = time.perf_counter()
        parts = [backend.predict(texts[i : i + EVAL_BATCH], padding) for i in range(0, len(texts), EVAL_BATCH)]
        predictions = scoring.concat(parts)
        seconds = time.perf_counter() - t0
        saved = scoring.save(predictions, job["settings"]["logits_out"])
        out: dict[str, Any] = {"status": "ok", "n": len(texts), "seconds": seconds, "padding": padding}
        if data.get("eval_labels") is not None:
            out["metrics"] = scoring.score(task, predictions, data["eval_labels"], job["ctx"]["labels"])
        out["logits"] = str(saved)
        return out
    except Exception as e:  # noqa: BLE001
        return {"status": "failed", "error": _error(e)}


def _time_cell(backend: Any, data: dict[str, Any], job: dict[str, Any], cell: dict[str, Any]) -> dict[str, Any]:
    s = job["settings"]
    pad, bs = cell["padding"], cell["batch_size"]
    texts, lengths, seqs = data["timing_texts"], data["timing_lengths"], data.get("timing_sequences")
    batches, sizes = make_batches(texts, lengths, bs, pad, job["dims"], s["seed"], seqs)
    kw = dict(
        warmup=s["warmup_iterations"],
        min_iterations=s["min_iterations"],
        min_seconds=s["min_seconds"],
        max_seconds=s["max_seconds"],
        sync=backend.sync,
    )
    load_start = load_average()
    e2e = summarize(measure(lambda b: backend.predict(b, pad), batches, sizes, **kw))
    model = None
    if s["model_only"]:
        prepared = [backend.prepare(b, pad) for b in batches]
        if prepared[0] is not None:
            model = summarize(measure(backend.run, prepared, sizes, **kw))
    return {"e2e": e2e, "model": model, "memory": _memory(), "load_start": load_start, "load_end": load_average()}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    job = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    events = open(argv[1], "a", encoding="utf-8")  # noqa: SIM115 - kept open for the whole block

    def emit(event: dict[str, Any]) -> None:
        events.write(json.dumps(event, default=str) + "\n")
        events.flush()
        os.fsync(events.fileno())

    try:
        run_group(job, emit)
    finally:
        events.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
