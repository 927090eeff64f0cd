"""Which variant to ship: the metric-vs-latency Pareto frontier, the fastest variant within a budget of the task's
primary metric (accuracy, entity F1, F1 ...: the row key is passed as ``metric``), and a copy of it as a new
single-variant bundle."""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bertdeploy import variants
from bertdeploy.bundle import MANIFEST_NAME, atomic_dir, read_manifest, resolve_inside
from bertdeploy.errors import UserError


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both axes (lower latency x, higher accuracy y), sorted by
    latency. Ties: of equal points only the first is kept."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1], i))
    front: list[int] = []
    best_y = float("-inf")
    for i in order:
        if points[i][1] > best_y:
            front.append(i)
            best_y = points[i][1]
    return front


def latency_rows(
    rows: list[dict[str, Any]], batch_size: int | None, metric: str = "accuracy"
) -> tuple[int, list[dict[str, Any]]]:
    """OK rows with a ``metric`` score at ``batch_size`` (default: the smallest batch size measured)."""
    ok = [r for r in rows if r["status"] == "ok" and r.get(metric) is not None and r.get("e2e_p50_ms")]
    if not ok:
        what = "an accuracy" if metric == "accuracy" else f"a {metric} score"
        raise UserError(f"nothing to pick from: no timed row has {what} (targets are untrained or no --data was given)")
    sizes = sorted({r["batch_size"] for r in ok})
    bs = batch_size if batch_size is not None else sizes[0]
    if bs not in sizes:
        raise UserError(f"batch size {bs} was not measured (measured: {', '.join(map(str, sizes))})")
    return bs, [r for r in ok if r["batch_size"] == bs]


def pick(
    rows: list[dict[str, Any]],
    max_accuracy_drop: float,
    batch_size: int | None = None,
    tolerance: float = 0.05,
    metric: str = "accuracy",
) -> dict[str, Any]:
    """The bertdeploy variant with the lowest p50 end-to-end latency whose ``metric`` (the row key of the task's
    primary metric) is at most ``max_accuracy_drop`` points below the reference: the best fp32 score measured (any
    backend).

    Latencies within ``tolerance`` (relative) of the fastest count as a tie — timing noise on a shared machine is
    larger than that — and the tie goes to the more accurate variant. The result names the metric (``metric``) and
    holds its value under its own key and the drop under ``<metric>_drop`` (``accuracy`` / ``accuracy_drop``)."""
    bs, candidates = latency_rows(rows, batch_size, metric)
    fp32 = [r for r in candidates if variants.float_reference(r["variant"])]
    ref = max(fp32 or candidates, key=lambda r: (r[metric], -r["e2e_p50_ms"]))
    floor = ref[metric] - max_accuracy_drop / 100.0 - 1e-12
    ours = [r for r in candidates if r["backend"] == "bertdeploy"]
    if not ours:
        raise UserError(f"nothing to pick from: no bertdeploy variant was timed with {metric}")
    within = [r for r in ours if r[metric] >= floor]
    if not within:
        best = max(ours, key=lambda r: r[metric])
        raise UserError(
            f"no bertdeploy variant is within {max_accuracy_drop:g} {metric} points of the reference {metric} "
            f"{ref[metric]:.4f} (best: {best['variant']} at {best[metric]:.4f})"
        )
    fastest = min(r["e2e_p50_ms"] for r in within)
    tied = [r for r in within if r["e2e_p50_ms"] <= fastest * (1 + tolerance)]
    best = max(tied, key=lambda r: (r[metric], -r["e2e_p50_ms"]))
    return {
        "target": best["target"],
        "variant": best["variant"],
        "padding": best["padding"],
        "batch_size": bs,
        "p50_ms": best["e2e_p50_ms"],
        "seq_per_s": best["e2e_seq_per_s"],
        "metric": metric,
        metric: best[metric],
        "f1_macro": best.get("f1_macro"),
        "reference": {k: ref[k] for k in ("target", "backend", "variant", "padding", metric, "e2e_p50_ms")},
        f"{metric}_drop": round(100.0 * (ref[metric] - best[metric]), 6),
        "max_accuracy_drop": max_accuracy_drop,
        "speedup_vs_reference": ref["e2e_p50_ms"] / best["e2e_p50_ms"],
        "tolerance": tolerance,
        "tied": sorted(r["variant"] + "/" + r["padding"] for r in tied),
        "considered": len(ours),
        "within_budget": len(within),
    }


def copy_variant(
    bundle: str | Path, variant: str, output: str | Path, overwrite: bool = False, note: Any = None
) -> Path:
    """Write a new bundle holding only ``variant`` (files other variants need are left out)."""
    src = Path(bundle)
    manifest = read_manifest(src)
    chosen = manifest.variant(variant)
    others = {v.file for v in variants.VARIANT_TABLE} | {v.file for v in manifest.variants}
    others.discard(chosen.file)
    with atomic_dir(output, overwrite=overwrite, kind="bundle", inputs=[src]) as tmp:
        for path in sorted(src.rglob("*")):
            rel = path.relative_to(src).as_posix()
            if path.is_dir() or rel in others or rel == MANIFEST_NAME:
                continue
            resolve_inside(src, rel, "bundle file")  # a symlink out of the bundle is not copied along
            if rel.endswith(".onnx_data") and rel[: -len("_data")] in others:
                continue
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, tmp / rel)
        raw = dict(manifest.raw)
        raw["variants"] = [v for v in raw.get("variants", []) if v.get("name") == variant]
        raw["picked"] = {"from": str(src.resolve()), "variant": variant, "bench": note}
        (tmp / MANIFEST_NAME).write_text(json.dumps(raw, indent=2, default=str) + "\n", encoding="utf-8")
    return Path(output)
