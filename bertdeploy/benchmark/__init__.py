"""``bertdeploy bench``: accuracy x latency x throughput of bundles, training runs and model presets, timed side
by side with PyTorch eager, the transformers pipeline and Optimum's ORTModel in one run.

    from bertdeploy.benchmark import BenchConfig, bench
    result = bench(BenchConfig(targets=["models/emotion"], data="data/emotion", output="bench/emotion"))
    result.rows          # one flat dict per cell (also results.csv)
    result.report        # the typed Report: groups (target x backend x variant) and cells (padding x batch)
    result.pick          # with pick=True: the fastest variant within max_accuracy_drop (points of the task's metric)

Every target of one sweep has the same task (the task table's): text classification, token classification,
question answering or multiple choice. Its primary metric (:attr:`bertdeploy.tasks.TaskSpec.metric`) is the
metric column, what ``--pick`` and the plots read; :mod:`bertdeploy.benchmark.scoring` says how each task's
predictions are scored and compared.

Modules: config (BenchConfig), targets / evaldata / materialize (what is benchmarked, on which records), plan (the
grid), backends / engines / head_backends / pipeline_backends (one class per engine and task), scoring (per task:
metrics, agreement), timing (the method), gemm (machine peak, FLOPs), worker / isolation / sweep (running,
resume), results (the typed Report) / report / summary / plots (outputs), pick (Pareto, pick, copy), compare (two
result sets), scenarios (``bench --scenario whole-file | serve``: :func:`~bertdeploy.benchmark.scenarios.whole_file.
run_whole_file`, :func:`~bertdeploy.benchmark.scenarios.serve_load.run_serve_load`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bertdeploy.benchmark.compare import Comparison, compare
from bertdeploy.benchmark.config import BenchConfig
from bertdeploy.benchmark.pick import pareto_front, pick
from bertdeploy.benchmark.results import Cell, Group, Report

__all__ = [
    "BenchConfig",
    "BenchResult",
    "Cell",
    "Comparison",
    "Group",
    "Report",
    "bench",
    "compare",
    "pareto_front",
    "pick",
]


@dataclass
class BenchResult:
    output: Path
    report: Report
    """The typed results (``results.json`` is ``report.to_dict()``)."""
    rows: list[dict[str, Any]]
    """One flat dict per cell (the CSV rows)."""
    files: dict[str, Path] = field(default_factory=dict)
    pick: dict[str, Any] | None = None

    @property
    def results(self) -> dict[str, Any]:
        """The content of results.json."""
        return self.report.to_dict()

    @property
    def complete(self) -> bool:
        return self.report.complete

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["status"] == "failed"]


def bench(config: BenchConfig, progress: Callable[[dict[str, Any]], None] | None = None) -> BenchResult:
    """Run (or resume) the sweep described by ``config``; write results.json/csv, report.md, config.json and plots
    into ``config.output``. ``progress`` receives events: ``plan`` (total, done), ``stage`` (message),
    ``cell_start`` (key) and ``cell`` (the finished cell)."""
    from bertdeploy.benchmark import report as report_files
    from bertdeploy.benchmark.sweep import Sweep

    sweep = Sweep(config, progress)
    report = sweep.run()
    if config.pick:
        report.pick = _pick(config, report)
        report.save(Path(config.output) / "results.json")
    files = report_files.write_all(report, Path(config.output))
    sweep.cleanup()
    return BenchResult(Path(config.output), report, report.rows(), files, report.pick)


def _pick(config: BenchConfig, report: Report) -> dict[str, Any]:
    from bertdeploy.benchmark.pick import copy_variant
    from bertdeploy.benchmark.scoring import bench_task
    from bertdeploy.errors import UserError

    metric = bench_task(report.task).metric
    rows = report.rows()
    chosen = pick(rows, config.max_accuracy_drop, config.pick_batch_size, config.pick_tolerance, metric)
    if config.pick_output:
        bundle = (report.targets.get(chosen["target"]) or {}).get("bundle")
        if not bundle:
            raise UserError(f"cannot copy the pick: target {chosen['target']} has no bundle")
        note = {k: chosen[k] for k in ("padding", "batch_size", "p50_ms", metric, f"{metric}_drop")}
        chosen["bundle"] = str(copy_variant(bundle, chosen["variant"], config.pick_output, config.overwrite, note))
    return chosen
