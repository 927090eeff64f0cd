"""``bertdeploy bench``: accuracy x latency x throughput of bundles, training runs and model presets, timed side
by side with PyTorch eager, the transformers pipeline and Optimum's ORTModel in one run.

    from bertdeploy.benchmark import BenchConfig, bench
    result = bench(BenchConfig(targets=["models/emotion"], data="data/emotion", output="bench/emotion"))
    result.rows          # one flat dict per cell (also results.csv)
    result.pick          # with pick=True: the fastest variant within max_accuracy_drop

Modules: config (BenchConfig), targets / materialize (what is benchmarked), backends (one class per engine),
timing (the method), gemm (machine peak, FLOPs), worker / sweep (the grid, isolation, resume), results / report /
plots (outputs), pick (Pareto, pick, copy), compare (two result sets).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bertdeploy.benchmark.compare import Comparison, compare
from bertdeploy.benchmark.config import BenchConfig
from bertdeploy.benchmark.pick import pareto_front, pick

__all__ = ["BenchConfig", "BenchResult", "Comparison", "bench", "compare", "pareto_front", "pick"]


@dataclass
class BenchResult:
    output: Path
    results: dict[str, Any]
    """The content of results.json."""
    rows: list[dict[str, Any]]
    """One flat dict per cell (the CSV rows)."""
    files: dict[str, Path] = field(default_factory=dict)
    pick: dict[str, Any] | None = None

    @property
    def complete(self) -> bool:
        return bool(self.results.get("complete"))

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["status"] == "failed"]


def bench(config: BenchConfig, progress: Callable[[dict[str, Any]], None] | None = None) -> BenchResult:
    """Run (or resume) the sweep described by ``config``; write results.json/csv, report.md, config.json and plots
    into ``config.output``. ``progress`` receives events: ``plan`` (total, done), ``stage`` (message),
    ``cell_start`` (key) and ``cell`` (the finished cell)."""
    from bertdeploy.benchmark import report
    from bertdeploy.benchmark.pick import copy_variant
    from bertdeploy.benchmark.results import rows as flat_rows
    from bertdeploy.benchmark.results import save
    from bertdeploy.benchmark.sweep import Sweep

    sweep = Sweep(config, progress)
    results = sweep.run()
    chosen = None
    if config.pick:
        chosen = pick(flat_rows(results), config.max_accuracy_drop, config.pick_batch_size, config.pick_tolerance)
        if config.pick_output:
            bundle = (results["targets"].get(chosen["target"]) or {}).get("bundle")
            if not bundle:
                from bertdeploy.errors import UserError

                raise UserError(f"cannot copy the pick: target {chosen['target']} has no bundle")
            note = {k: chosen[k] for k in ("padding", "batch_size", "p50_ms", "accuracy", "accuracy_drop")}
            chosen["bundle"] = str(copy_variant(bundle, chosen["variant"], config.pick_output, config.overwrite, note))
        results["pick"] = chosen
        save(Path(config.output) / "results.json", results)
    files = report.write_all(results, Path(config.output))
    sweep.cleanup()
    return BenchResult(Path(config.output), results, flat_rows(results), files, chosen)
