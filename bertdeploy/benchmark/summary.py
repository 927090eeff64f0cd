"""The numbers a task's goals are read from, per target and engine (backend x variant): the task's metrics, the drop
against fp32, the shares of records predicted as PyTorch fp32 and as the task's named peer predict them, and the
end-to-end throughput at each batch size with its ratio to the peer's (each engine at its best padding).

The peer (:attr:`bertdeploy.benchmark.scoring.BenchTask.peer`): the transformers pipeline for token classification
and question answering, PyTorch eager fp32 for multiple choice; text classification names none (its report is as
it always was)."""

from __future__ import annotations

from typing import Any

from bertdeploy.benchmark.results import REFERENCE_BACKEND, REFERENCE_DTYPE, Report
from bertdeploy.benchmark.scoring import BenchTask, bench_task

PEER_NAMES = {"pipeline": "the transformers pipeline", "torch": "PyTorch eager", "ortmodel": "Optimum's ORTModel"}


def engine_name(backend: str, variant: str) -> str:
    return variant if backend == "bertdeploy" else f"{backend} {variant}"


def _best(rows: list[dict[str, Any]], bs: int) -> float | None:
    """The highest end-to-end throughput among ``rows`` at batch size ``bs`` (any padding)."""
    values = [r["e2e_seq_per_s"] for r in rows if r["batch_size"] == bs and r.get("e2e_seq_per_s")]
    return max(values) if values else None


def _fp32_row(mine: dict[tuple[str, str], list[dict[str, Any]]], metric: str) -> tuple[dict[str, Any], str]:
    """The row the Δ columns are counted from: the runtime's fp32, else PyTorch fp32 (with a score)."""
    for key in (("bertdeploy", "fp32"), (REFERENCE_BACKEND, REFERENCE_DTYPE)):
        if mine.get(key) and mine[key][0].get(metric) is not None:
            return mine[key][0], " ".join(key)
    return {}, ""


def _delta(row: dict[str, Any], base: dict[str, Any], key: str) -> float | None:
    a, b = row.get(key), base.get(key)
    return round(100 * (a - b), 4) if a is not None and b is not None else None


def peer_rows(report: Report, rows: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """One dict per (target, engine) with ``metrics``, ``delta_points`` (``{metric: its value minus that of
    delta_reference}``, the runtime's fp32 or else PyTorch fp32, in points), ``agreement_torch``,
    ``agreement_peer``, ``throughput`` ``{batch: records/s}`` and ``vs_peer`` ``{batch: ratio}``; [] when the task
    names no peer."""
    task = bench_task(report.task)
    if task.peer is None:
        return []
    ok = [r for r in (rows if rows is not None else report.rows()) if r["status"] == "ok"]
    sizes = sorted({r["batch_size"] for r in ok})
    out = []
    for target in dict.fromkeys(r["target"] for r in ok):
        mine: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for r in ok:
            if r["target"] == target:
                mine.setdefault((r["backend"], r["variant"]), []).append(r)
        base, base_name = _fp32_row(mine, task.metric)
        peer = mine.get(task.peer, [])
        for (backend, variant), cells in mine.items():
            first = cells[0]
            throughput = {bs: _best(cells, bs) for bs in sizes}
            ratios = {bs: _ratio(throughput[bs], _best(peer, bs)) for bs in sizes}
            out.append({
                "target": target,
                "engine": engine_name(backend, variant),
                "metrics": {k: first.get(k) for k, _ in task.columns},
                "delta_points": {k: _delta(first, base, k) for k, _ in task.delta_columns},
                "delta_reference": base_name,
                "agreement_torch": first.get("agreement_torch"),
                "agreement_peer": first.get("agreement_peer") if (backend, variant) != task.peer else 1.0,
                "throughput": throughput,
                "vs_peer": ratios,
            })  # fmt: skip
    return out


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


def _f(value: Any, spec: str) -> str:
    return "–" if value is None else spec.format(value)


def peer_markdown(report: Report, rows: list[dict[str, Any]]) -> list[str]:
    """The report's section on the task's peer (empty when the task names none)."""
    task = bench_task(report.task)
    found = peer_rows(report, rows)
    if task.peer is None or not found:
        return []
    peer = f"{PEER_NAMES.get(task.peer[0], task.peer[0])} ({engine_name(*task.peer)})"
    sizes = list(found[0]["throughput"])
    unit = f"{task.unit}s/s"
    versus = found[0]["delta_reference"] or "fp32"
    head = ["engine", *(title for _, title in task.columns), *(f"Δ {t} vs {versus}" for _, t in task.delta_columns)]
    separate = task.peer != (REFERENCE_BACKEND, REFERENCE_DTYPE)  # else "= peer" is "= torch fp32"
    head += ["= torch fp32", *([f"= {engine_name(*task.peer)}"] if separate else [])]
    head += [f"{unit} b{bs}" for bs in sizes] + [f"× peer b{bs}" for bs in sizes]
    out = [f"## Against {peer}", "", *_legend(task, unit), ""]
    for target in dict.fromkeys(r["target"] for r in found):
        out += [f"### {target}", "", *_references(report, target, task)]
        out += ["| " + " | ".join(head) + " |", "|---" + "|---:" * (len(head) - 1) + "|"]
        for r in (r for r in found if r["target"] == target):
            cells = [r["engine"], *(_f(r["metrics"][k], "{:.4f}") for k, _ in task.columns)]
            cells += [_f(r["delta_points"][k], "{:+.2f}") for k, _ in task.delta_columns]
            cells += [_f(r["agreement_torch"], "{:.4f}")]
            cells += [_f(r["agreement_peer"], "{:.4f}")] if separate else []
            cells += [_f(r["throughput"][bs], "{:.1f}") for bs in sizes]
            cells += [_f(r["vs_peer"][bs], "{:.2f}x") for bs in sizes]
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
    return out


def _legend(task: BenchTask, unit: str) -> list[str]:
    peer = engine_name(*task.peer) if task.peer else "peer"
    return [
        f"Per engine: the metrics on the evaluation split; Δ: the metric minus fp32's, in points (negative: lower); "
        f"`= torch fp32` (`= {peer}`): share of {task.agreement}, the reference being PyTorch fp32 ({peer}); "
        f"{unit} end to end (tokenization, windows and post-processing included) at each batch size, best padding "
        "of each engine; × peer: that throughput / the peer's at the same batch size.",
    ]


def _references(report: Report, target: str, task: BenchTask) -> list[str]:
    """The model's scores before the bench (training run, export gate), for the metric."""
    ref = (report.targets.get(target) or {}).get("reference_scores") or {}
    found = []
    training = ref.get("training") or {}
    if training.get(task.metric) is not None:
        found.append(f"training run's final {task.metric} [{training.get('split')}]: {training[task.metric]:.4f}")
    export = ref.get("export") or {}
    if export.get(task.metric) is not None:
        found.append(f"PyTorch in the export gate [{export.get('split')}]: {export[task.metric]:.4f}")
    ev = (report.targets.get(target) or {}).get("eval") or {}
    lines = [f"Evaluated on {ev.get('source')} [{ev.get('split')}], {ev.get('n')} {task.unit}s."]
    if found:
        how = " (seqeval on word tags)" if task.name == "token-classification" else ""
        lines.append(f"Before the bench{how}: " + "; ".join(found) + ".")
    return [*lines, ""]
