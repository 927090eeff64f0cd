"""The timing method: warm up, then run until BOTH a minimum count and a minimum duration are reached (capped by a
maximum duration), timed with :func:`time.perf_counter`; summarise as percentiles and throughput.

Imports only numpy and the standard library.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

PERCENTILES = (50, 90, 99)


@dataclass
class Measurement:
    """Raw per-iteration numbers of one timed loop."""

    latencies: list[float]
    """Seconds per call (one call = one batch)."""
    sequences: list[int]
    """Sequences in each call's batch."""
    tokens: list[int]
    """True (unpadded) tokens in each call's batch."""
    flops: list[float]
    """Useful FLOPs of each call's batch (at the true lengths)."""
    capped: bool = False
    """True when ``max_seconds`` stopped the loop before ``min_iterations`` was reached."""


def measure(
    fn: Callable[[Any], Any],
    batches: Sequence[Any],
    sizes: Sequence[tuple[int, int, float]],
    *,
    warmup: int = 3,
    min_iterations: int = 10,
    min_seconds: float = 1.0,
    max_seconds: float = 60.0,
    sync: Callable[[], None] | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> Measurement:
    """Call ``fn(batches[i % len(batches)])`` in order until both ``min_iterations`` calls and ``min_seconds`` of
    timed work are done, or ``max_seconds`` is exceeded.

    ``sizes[i]`` is ``(sequences, true_tokens, useful_flops)`` of ``batches[i]``. ``sync`` (e.g.
    ``torch.cuda.synchronize``) is called before each clock read so asynchronous devices are timed to
    completion. The first ``warmup`` calls (cycling through the same batches) are not timed.
    """
    if not batches or len(batches) != len(sizes):
        raise ValueError("measure() needs a non-empty list of batches and one size triple per batch")
    if min_iterations < 1:
        raise ValueError("min_iterations must be >= 1")
    for i in range(warmup):
        fn(batches[i % len(batches)])
    if sync:
        sync()
    latencies: list[float] = []
    seqs: list[int] = []
    toks: list[int] = []
    flops: list[float] = []
    total = 0.0
    i = 0
    capped = False
    while len(latencies) < min_iterations or total < min_seconds:
        if total >= max_seconds:
            capped = len(latencies) < min_iterations
            break
        k = i % len(batches)
        t0 = clock()
        fn(batches[k])
        if sync:
            sync()
        dt = clock() - t0
        latencies.append(dt)
        seqs.append(sizes[k][0])
        toks.append(sizes[k][1])
        flops.append(sizes[k][2])
        total += dt
        i += 1
    return Measurement(latencies=latencies, sequences=seqs, tokens=toks, flops=flops, capped=capped)


def percentiles(values: Sequence[float], qs: Sequence[float] = PERCENTILES) -> dict[str, float]:
    """``{"p50": ..., "p90": ..., "p99": ...}`` with linear interpolation between order statistics
    (numpy's default); an empty input gives NaNs."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0:
        return {f"p{q:g}": float("nan") for q in qs}
    return {f"p{q:g}": float(v) for q, v in zip(qs, np.percentile(arr, qs), strict=True)}


def summarize(m: Measurement) -> dict[str, Any]:
    """Latency percentiles (ms per batch); throughput over the whole timed run: sequences/s, true tokens/s and
    useful GFLOP/s (FLOPs at the true lengths / time)."""
    lat = np.asarray(m.latencies, dtype=np.float64)
    total = float(lat.sum())
    pct = percentiles(lat)
    return {
        "iterations": int(lat.size),
        "seconds": total,
        "capped": m.capped,
        **{f"{k}_ms": v * 1e3 for k, v in pct.items()},
        "mean_ms": float(lat.mean() * 1e3) if lat.size else float("nan"),
        "std_ms": float(lat.std() * 1e3) if lat.size else float("nan"),
        "min_ms": float(lat.min() * 1e3) if lat.size else float("nan"),
        "seq_per_s": sum(m.sequences) / total if total > 0 else float("nan"),
        "tokens_per_s": sum(m.tokens) / total if total > 0 else float("nan"),
        "tokens_per_batch": float(np.mean(m.tokens)) if m.tokens else float("nan"),
        "useful_gflops": sum(m.flops) / total / 1e9 if total > 0 else float("nan"),
    }
