"""The results store: ``results.json`` (schema below), resume bookkeeping, and the flat rows every report and
table is made of.

results.json::

    {"schema": "bertdeploy-bench/1", "name", "command", "config", "started", "updated", "complete",
     "machine", "versions", "gemm", "load": {"start", "end"},
     "targets": {name: {spec, kind, trained, labels, max_length, eval: {split, n, source}, dims, notes}},
     "groups": {"target|backend|variant": {status, n, metrics, logits, agreement_torch, max_abs_diff_torch}},
     "cells": [{key, target, backend, variant, padding, batch_size, status, error, fingerprint, e2e, model,
                memory, info, load_start, load_end, ...}]}
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from bertdeploy.bundle import write_json

SCHEMA = "bertdeploy-bench/1"
FINISHED = ("ok", "skipped")
TIMING_KEYS = (
    "min_seconds",
    "min_iterations",
    "warmup_iterations",
    "max_seconds",
    "model_only",
    "timing_texts",
    "seed",
)


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def cell_key(target: str, backend: str, variant: str, padding: str, batch_size: int) -> str:
    return f"{target}|{backend}|{variant}|{padding}|{batch_size}"


def group_key(target: str, backend: str, variant: str) -> str:
    return f"{target}|{backend}|{variant}"


def fingerprint(cfg: Any, threads: int, device: str, max_length: int) -> dict[str, Any]:
    """What must be equal for an earlier cell to be reused on resume."""
    fp = {k: getattr(cfg, k) for k in TIMING_KEYS}
    fp.update(threads=threads, device=device, max_length=max_length)
    return fp


def empty(cfg_dict: dict[str, Any]) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "name": cfg_dict.get("name"),
        "command": cfg_dict.get("command"),
        "config": cfg_dict,
        "started": now(),
        "updated": now(),
        "complete": False,
        "machine": {},
        "versions": {},
        "gemm": {},
        "load": {},
        "targets": {},
        "groups": {},
        "cells": [],
    }


def read(path: Path) -> dict[str, Any] | None:
    """An earlier results.json, or None when absent / not ours (then the sweep starts fresh)."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) and data.get("schema") == SCHEMA else None


def save(path: Path, results: dict[str, Any]) -> None:
    results["updated"] = now()
    write_json(path, _clean(results))
    readable(path)


def readable(path: Path) -> None:
    """Give a file written through a temporary sibling (mode 0600) the usual umask mode."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, 0o666 & ~mask)


def _clean(x: Any) -> Any:
    """NaN/inf -> None so results.json is strict JSON."""
    if isinstance(x, float) and not np.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_clean(v) for v in x]
    return x


def finished_cells(previous: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """Cells of an earlier run that need not be redone (ok or skipped; failed ones are retried)."""
    if not previous:
        return {}
    return {c["key"]: c for c in previous.get("cells", []) if c.get("status") in FINISHED}


def agreement(results: dict[str, Any]) -> None:
    """Argmax agreement and max |logit diff| of every block against PyTorch fp32 of the same target (measured on
    the evaluation texts); where PyTorch did not run, a bundle variant's parity from export time is used."""
    groups = results["groups"]
    for gkey, g in groups.items():
        target, backend, variant = gkey.split("|")
        ref = groups.get(group_key(target, "torch", "fp32"), {})
        if g.get("status") != "ok":
            continue
        if ref.get("status") == "ok" and ref.get("logits") and Path(ref["logits"]).is_file():
            if g.get("logits") and Path(g["logits"]).is_file():
                a, b = np.load(g["logits"]), np.load(ref["logits"])
                if a.shape == b.shape:
                    g["agreement_torch"] = float((a.argmax(-1) == b.argmax(-1)).mean())
                    g["max_abs_diff_torch"] = float(np.abs(a - b).max())
                    g["agreement_source"] = "measured"
        elif backend == "bertdeploy" and "agreement_torch" not in g:
            parity = (results["targets"].get(target, {}).get("parity") or {}).get(variant) or {}
            agree = parity.get("agreement", parity.get("argmax_agreement"))
            if agree is not None:
                g["agreement_torch"] = agree
                g["max_abs_diff_torch"] = parity.get("max_diff", parity.get("max_abs_diff"))
                g["agreement_source"] = "export"


def rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One flat dict per cell (for the CSV, the tables and the plots), with the block's accuracy and agreement
    and the GEMM share joined in."""
    peak = (results.get("gemm") or {}).get("peak_gflops")
    out = []
    for c in results["cells"]:
        t = results["targets"].get(c["target"], {})
        g = results["groups"].get(group_key(c["target"], c["backend"], c["variant"]), {})
        info = c.get("info") or {}
        e2e, model, mem = c.get("e2e") or {}, c.get("model") or {}, c.get("memory") or {}
        metrics = g.get("metrics") or {}
        row: dict[str, Any] = {
            "target": c["target"],
            "kind": t.get("kind"),
            "trained": t.get("trained"),
            "backend": c["backend"],
            "variant": c["variant"],
            "precision": info.get("precision"),
            "padding": c["padding"],
            "batch_size": c["batch_size"],
            "max_length": (c.get("fingerprint") or {}).get("max_length"),
            "threads": (c.get("fingerprint") or {}).get("threads"),
            "status": c["status"],
        }
        for prefix, m in (("e2e", e2e), ("model", model)):
            for k in ("p50_ms", "p90_ms", "p99_ms", "mean_ms", "seq_per_s", "tokens_per_s", "useful_gflops"):
                row[f"{prefix}_{k}"] = m.get(k)
            row[f"{prefix}_iterations"] = m.get("iterations")
            row[f"{prefix}_capped"] = m.get("capped")
        row["tokens_per_batch"] = e2e.get("tokens_per_batch")
        best = model.get("useful_gflops") or e2e.get("useful_gflops")
        row["gemm_peak_gflops"] = peak
        row["peak_share"] = best / peak if best and peak else None
        row["rss_mb"] = mem.get("rss_mb")
        row["peak_rss_mb"] = mem.get("peak_rss_mb")
        row["gpu_peak_mb"] = mem.get("gpu_peak_mb")
        row["size_mb"] = info["bytes"] / 2**20 if info.get("bytes") else None
        row["providers"] = ",".join(info.get("providers") or [])
        row["accuracy"] = metrics.get("accuracy") if t.get("trained") else None
        row["f1_macro"] = metrics.get("f1_macro") if t.get("trained") else None
        row["agreement_torch"] = g.get("agreement_torch")
        row["max_abs_diff_torch"] = g.get("max_abs_diff_torch")
        row["agreement_source"] = g.get("agreement_source")
        row["load_1m_start"] = (c.get("load_start") or [None])[0]
        row["load_1m_end"] = (c.get("load_end") or [None])[0]
        row["error"] = (c.get("error") or "").splitlines()[0][:200] if c.get("error") else None
        out.append(row)
    return out
