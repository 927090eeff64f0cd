"""``bertdeploy bench compare A B``: ratios between two result sets, cell by cell."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bertdeploy.benchmark.results import Report
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
    each side has a single target — and give B/A ratios of latency and throughput and B−A of accuracy."""
    (ra, fa), (rb, fb) = load_results(a), load_results(b)
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
                "accuracy_delta": (y["accuracy"] - x["accuracy"])
                if x.get("accuracy") is not None and y.get("accuracy") is not None
                else None,
            }
        )
    return out
