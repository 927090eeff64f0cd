"""One engine of the ``whole-file`` scenario in its own process: ``python -m
bertdeploy.benchmark.scenarios.whole_file_worker JOB.json``.

It loads the engine (a bench backend, :mod:`bertdeploy.benchmark.backends`), warms it up, says ``{"ready": ...}``
and then answers the driver's commands on stdin, one JSON line each on its own stdout: ``run [S]`` (timed passes over
every text, as many as take at least S seconds: one when S is 0 or absent), ``lat N`` (the first N texts one call
each, ms per call), ``done`` (the labels of the last pass and the accuracy; then it exits). File descriptor 1 is
the protocol's alone: whatever the engines print goes to stderr.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

#: backends that batch a whole file themselves (length-sorted token-budget batches); the others get chunks of
#: :data:`PEER_BATCH` texts in file order, as a user of the transformers pipeline would
SELF_BATCHING = ("bertdeploy", "openvino")
PEER_BATCH = 32


def parse_engine(spec: str) -> tuple[str, str, str, int | None]:
    """``BACKEND:VARIANT[:PADDING[:streams=N]]`` -> (backend, variant, padding, streams); padding defaults to bucketed
    (the runtime's) for the self-batching backends and dynamic (each chunk padded to its longest text) for the
    others; ``streams=N`` (bertdeploy only: ``load(..., streams=N)``, N single-threaded sessions at once) defaults to
    None, what ``load`` does."""
    from bertdeploy.errors import UserError

    parts = spec.split(":")
    backend, variant, padding = (parts + ["", ""])[:3]
    streams = None
    if parts[3:]:
        key, _, value = parts[3].partition("=")
        if key != "streams" or not value.isdigit() or int(value) < 1 or backend != "bertdeploy" or parts[4:]:
            raise UserError(f"engine {spec!r}: the fourth field is streams=N (N >= 1), for bertdeploy engines only")
        streams = int(value)
    return backend, variant or "fp32", padding or ("bucketed" if backend in SELF_BATCHING else "dynamic"), streams


def make_predict(job: dict[str, Any]) -> tuple[Callable[[list[str]], list[str]], dict[str, Any]]:
    """The engine of ``job["engine"]``: ``predict(texts) -> labels`` end to end, and the backend's facts."""
    from bertdeploy.benchmark.backends import BackendContext, make_backend

    backend, variant, padding, streams = parse_engine(job["engine"])
    labels = job["labels"]
    ctx = BackendContext(
        hf_dir=Path(job["hf"]) if job.get("hf") else None,
        bundle=Path(job["bundle"]),
        labels=labels,
        max_length=job["max_length"],
        variant=variant,
        threads=job["threads"],
        device="cpu",
        max_batch_size=job.get("batch_size", 64),
        calibration=job.get("calibration", []),
        streams=streams,
        max_tokens=job.get("max_tokens"),
    )
    engine = make_backend(backend, ctx)
    info = engine.load()
    chunk = None if backend in SELF_BATCHING else PEER_BATCH

    def predict(texts: list[str]) -> list[str]:
        parts = [texts] if chunk is None else [texts[i : i + chunk] for i in range(0, len(texts), chunk)]
        ids = np.concatenate([np.asarray(engine.predict(p, padding)).argmax(-1) for p in parts])
        return [labels[i] for i in ids.tolist()]

    return predict, {**info, "padding": padding}


def timed_passes(
    predict: Callable[[list[str]], list[str]], texts: list[str], min_seconds: float
) -> tuple[list[str], float, int]:
    """Pass over ``texts`` until at least ``min_seconds`` have gone (at least once): (labels of the last pass,
    seconds, passes). Short files of a fast engine otherwise make rounds of a fraction of a second, whose ratios
    move with every scheduler tick."""
    start, passes = time.perf_counter(), 0
    while True:
        labels = predict(texts)
        passes += 1
        seconds = time.perf_counter() - start
        if seconds >= min_seconds:
            return labels, seconds, passes


def serve(job: dict[str, Any], send: Callable[[dict[str, Any]], None]) -> None:
    """Load, warm up, then answer commands on stdin until ``done``."""
    data = json.loads(Path(job["data_file"]).read_text(encoding="utf-8"))
    texts, gold = data["texts"], data["gold"]
    from bertdeploy.benchmark.contract import Skip

    try:
        predict, info = make_predict(job)
    except Skip as e:  # cannot run on this machine (a provider without a device, a variant not in the bundle)
        send({"ready": False, "skip": str(e)})
        return
    predict(texts[:256])
    send({"ready": True, "info": info})
    labels: list[str] = []
    for line in sys.stdin:
        command = line.split()
        if command and command[0] == "run":
            load = os.getloadavg()[0]
            labels, seconds, passes = timed_passes(predict, texts, float(command[1]) if len(command) > 1 else 0.0)
            send({"seconds": seconds, "passes": passes, "load_1m": load})
        elif command and command[0] == "lat":
            latencies = []
            for text in texts[: int(command[1])]:
                start = time.perf_counter()
                predict([text])
                latencies.append((time.perf_counter() - start) * 1e3)
            send({"latencies_ms": latencies})
        else:
            accuracy = sum(a == b for a, b in zip(labels, gold, strict=True)) / len(gold) if gold else None
            send({"labels": labels, "accuracy": accuracy, "texts": len(texts)})
            return


def main(argv: list[str]) -> None:
    proto = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    def send(message: dict[str, Any]) -> None:
        proto.write(json.dumps(message) + "\n")
        proto.flush()

    serve(json.loads(Path(argv[0]).read_text(encoding="utf-8")), send)


if __name__ == "__main__":
    main(sys.argv[1:])
