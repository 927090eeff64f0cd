"""``bertdeploy bench compare A B``: ratios between two result sets, cell by cell."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bertdeploy.benchmark.results import Report
from bertdeploy.benchmark.scoring import bench_task
from bertdeploy.errors import UserError

KEY = ("target", "backend", "variant", "padding", "batch_size")


@dataclass
class Comparison:
    a: dict[str, Any]
    """name, path, machine cpu, load, versions of A."""
    b: dict[str, Any]
    rows: list[dict[str, Any]] = field(default_factory=list)
    only_a: int = 0
    only_b: int = 0
    matched_on: str = "target"
    metric: str = "accuracy"
    """The row key of the task's primary metric; each row's B − A of it is ``<metric>_delta``."""
    metric_label: str = "accuracy"


def load_results(path: str | Path) -> tuple[Report, Path]:
    """The report at ``path`` (a results folder or its results.json) and the file it came from."""
    p = Path(path)
    f = p / "results.json" if p.is_dir() else p
    res = Report.read(f)
    if res is None:
        raise UserError(f"no bertdeploy bench results at {p} (expected a results.json written by bertdeploy bench)")
    return res, f


def _meta(res: Report, path: Path) -> dict[str, Any]:
    return {
        "name": res.name or path.parent.name,
        "path": str(path),
        "cpu": res.machine.get("cpu"),
        "threads": res.machine.get("threads"),
        "load": res.load.get("start"),
        "gemm_peak": res.gemm.get("peak_gflops"),
        "versions": res.versions,
    }


def _ratio(new: Any, old: Any) -> float | None:
    return new / old if new and old else None


def compare(a: str | Path, b: str | Path) -> Comparison:
    """Match OK cells of A and B by (target, backend, variant, padding, batch size) — ignoring the target name when
    each side has a single target — and give B/A ratios of latency and throughput and B−A of the task's primary
    metric (accuracy, entity F1 ...). Result sets of different tasks are not compared."""
    (ra, fa), (rb, fb) = load_results(a), load_results(b)
    if ra.task != rb.task:
        raise UserError(f"A holds {ra.task} results and B {rb.task} results: compare result sets of one task")
    task = bench_task(ra.task)
    metric = task.metric
    rows_a = [r for r in ra.rows() if r["status"] == "ok"]
    rows_b = [r for r in rb.rows() if r["status"] == "ok"]
    key = KEY
    ta, tb = {r["target"] for r in rows_a}, {r["target"] for r in rows_b}
    if len(ta) == 1 and len(tb) == 1 and ta != tb:
        key = KEY[1:]
    ia = {tuple(r[k] for k in key): r for r in rows_a}
    ib = {tuple(r[k] for k in key): r for r in rows_b}
    common = [k for k in ia if k in ib]
    if not common:
        raise UserError("the two result sets have no cell in common (same backend, variant, padding and batch size)")
    out = Comparison(
        _meta(ra, fa),
        _meta(rb, fb),
        only_a=len(ia) - len(common),
        only_b=len(ib) - len(common),
        matched_on="target" if key == KEY else "single target each",
        metric=metric,
        metric_label=task.label,
    )
    for k in common:
        x, y = ia[k], ib[k]
        out.rows.append(
            {
                **dict(zip(KEY, (x[f] for f in KEY), strict=True)),
                "a_p50_ms": x["e2e_p50_ms"],
                "b_p50_ms": y["e2e_p50_ms"],
                "p50_ratio": _ratio(y["e2e_p50_ms"], x["e2e_p50_ms"]),
                "p99_ratio": _ratio(y["e2e_p99_ms"], x["e2e_p99_ms"]),
                "a_seq_per_s": x["e2e_seq_per_s"],
                "b_seq_per_s": y["e2e_seq_per_s"],
                "throughput_ratio": _ratio(y["e2e_seq_per_s"], x["e2e_seq_per_s"]),
                "model_p50_ratio": _ratio(y["model_p50_ms"], x["model_p50_ms"]),
                f"{metric}_delta": (y[metric] - x[metric])
                if x.get(metric) is not None and y.get(metric) is not None
                else None,
            }
        )
    return out
