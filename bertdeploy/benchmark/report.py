"""Everything a sweep leaves in its output folder besides results.json: results.csv (one row per cell),
report.md (machine, versions, GEMM peak, one table per target, the task's peer section, failures, plots, pick) and
config.json. The metric columns are the task's (:mod:`bertdeploy.benchmark.scoring`), titled with its labels."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

from bertdeploy.benchmark import plots
from bertdeploy.benchmark.results import Report
from bertdeploy.benchmark.scoring import BenchTask, bench_task
from bertdeploy.benchmark.summary import peer_markdown
from bertdeploy.bundle import atomic_file, write_json
from bertdeploy.outputs import relative_paths

TABLE = [
    ("backend", "backend", None),
    ("variant", "variant", None),
    ("padding", "padding", None),
    ("batch", "batch_size", None),
    ("p50 ms", "e2e_p50_ms", "{:.2f}"),
    ("p90 ms", "e2e_p90_ms", "{:.2f}"),
    ("p99 ms", "e2e_p99_ms", "{:.2f}"),
    ("seq/s", "e2e_seq_per_s", "{:.1f}"),
    ("tok/s", "e2e_tokens_per_s", "{:.0f}"),
    ("model p50 ms", "model_p50_ms", "{:.2f}"),
    ("model seq/s", "model_seq_per_s", "{:.1f}"),
    ("GFLOP/s", "model_useful_gflops", "{:.1f}"),
    ("% peak", "peak_share", "{:.0%}"),
    ("peak RSS MB", "peak_rss_mb", "{:.0f}"),
    ("size MB", "size_mb", "{:.1f}"),
    ("accuracy", "accuracy", "{:.4f}"),
    ("macro-F1", "f1_macro", "{:.4f}"),
    ("agree vs torch", "agreement_torch", "{:.4f}"),
    ("load 1m", "load_1m_start", "{:.2f}"),
]


def table_columns(task: BenchTask, columns: list = TABLE) -> list[tuple[str, str, str | None]]:
    """``columns`` with the accuracy / macro-F1 pair replaced by the task's metric columns (and an agreement column
    for its peer): text classification keeps its table as it was."""
    metrics = [(title, key, "{:.4f}") for key, title in task.columns]
    peer = [(f"agree vs {task.peer[0]}", "agreement_peer", "{:.4f}")] if task.peer and task.peer[0] != "torch" else []
    out: list[tuple[str, str, str | None]] = []
    for column in columns:
        if column[1] == "accuracy":
            out += metrics
        elif column[1] != "f1_macro":
            out += [column, *peer] if column[1] == "agreement_torch" else [column]
    if task.unit != "text":
        out = [(title.replace("seq/s", "q/s"), key, spec) for title, key, spec in out]
    return out


def fmt(value: Any, spec: str | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if spec is None:
        return str(value)
    try:
        return spec.format(value)
    except (ValueError, TypeError):
        return str(value)


def markdown_table(rows: list[dict[str, Any]], columns=TABLE) -> str:
    head = "| " + " | ".join(c[0] for c in columns) + " |"
    sep = "|" + "|".join("---" if c[2] is None else "---:" for c in columns) + "|"
    body = ["| " + " | ".join(fmt(r.get(key), spec) for _, key, spec in columns) + " |" for r in rows]
    return "\n".join([head, sep, *body])


def headline(rows: list[dict[str, Any]], metrics: tuple[str, ...] = ("accuracy", "f1_macro")) -> list[dict[str, Any]]:
    """One row per (target, backend, variant): p50 at the smallest batch and sequences/s at the largest, each
    with its best padding, plus size, the task's ``metrics`` and agreement — the table a README shows."""
    ok = [r for r in rows if r["status"] == "ok"]
    out = []
    for key in dict.fromkeys((r["target"], r["backend"], r["variant"]) for r in ok):
        mine = [r for r in ok if (r["target"], r["backend"], r["variant"]) == key]
        small, large = min(r["batch_size"] for r in mine), max(r["batch_size"] for r in mine)
        lat = min((r for r in mine if r["batch_size"] == small), key=lambda r: r["e2e_p50_ms"])
        thr = max((r for r in mine if r["batch_size"] == large), key=lambda r: r["e2e_seq_per_s"])
        out.append(
            {
                "target": key[0],
                "engine": key[2] if key[1] == "bertdeploy" else f"{key[1]} {key[2]}",
                "size_mb": lat.get("size_mb"),
                "p50": f"{lat['e2e_p50_ms']:.2f} ({lat['padding']}, b{small})",
                "seq_s": f"{thr['e2e_seq_per_s']:.1f} ({thr['padding']}, b{large})",
                "model_seq_s": thr.get("model_seq_per_s"),
                "peak_share": thr.get("peak_share"),
                **{k: lat.get(k) for k in metrics},
                "agreement_torch": lat.get("agreement_torch"),
                "agreement_peer": lat.get("agreement_peer"),
            }
        )
    return out


HEADLINE = [
    ("target", "target", None),
    ("engine", "engine", None),
    ("size MB", "size_mb", "{:.1f}"),
    ("p50 ms, smallest batch", "p50", None),
    ("seq/s, largest batch", "seq_s", None),
    ("model-only seq/s", "model_seq_s", "{:.1f}"),
    ("% GEMM peak", "peak_share", "{:.0%}"),
    ("accuracy", "accuracy", "{:.4f}"),
    ("macro-F1", "f1_macro", "{:.4f}"),
    ("agreement vs torch", "agreement_torch", "{:.4f}"),
]


def write_csv(rows: list[dict[str, Any]], path: Path) -> Path:
    fields = list(dict.fromkeys(k for r in rows for k in r)) or ["target"]
    with atomic_file(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    return path


def cpu_features(machine: dict[str, Any]) -> str:
    """The recorded CPU features (``cpu_features``; older results kept them as a list under ``isa``)."""
    features = machine.get("cpu_features")
    if features is None:
        features = machine.get("isa") if isinstance(machine.get("isa"), list) else [machine.get("isa") or ""]
    return ", ".join(f for f in features if f)


def _machine_lines(res: Report) -> list[str]:
    m, v, g, load = res.machine or {}, res.versions or {}, res.gemm or {}, res.load or {}
    lines = [
        f"- **Machine**: {m.get('cpu')} ({cpu_features(m)}), {m.get('logical_cpus')} logical CPUs, "
        f"{m.get('threads')} threads used, {m.get('memory_gib')} GiB, GPU: {', '.join(m.get('gpus') or []) or 'none'}"
        f", device: {m.get('device')}",
        f"- **Load average** (1/5/15 min, `uptime`): start {load.get('start')}, end {load.get('end')}",
        "- **Versions**: " + ", ".join(f"{k} {val}" for k, val in v.items() if val),
    ]
    if g.get("peak_gflops"):
        best = {}
        for r in g.get("measurements", []):
            if r.get("gflops"):
                best[r["engine"]] = max(best.get(r["engine"], 0.0), r["gflops"])
        per = ", ".join(f"{k} {val:.1f}" for k, val in best.items())
        lines.append(
            f"- **fp32 GEMM peak** (measured in this run, {g.get('threads')} threads): {g['peak_gflops']:.1f} GFLOP/s "
            f"(best per engine: {per}). `% peak` = useful GFLOP/s (FLOPs at the true token lengths, model only) / peak."
        )
    return lines


def _method_lines(res: Report, cfg: dict[str, Any]) -> list[str]:
    """How the cells were timed, and how big a model call of the self-batching engines was."""
    method = (
        f"- **Method**: {cfg.get('warmup_iterations')} warm-up calls, then until >= {cfg.get('min_iterations')} calls "
        f"and >= {cfg.get('min_seconds')} s (cap {cfg.get('max_seconds')} s); latency per batch, end to end "
        "(tokenization included) unless marked *model*; each backend x variant in its own "
        f"{'process' if cfg.get('isolation') == 'process' else 'block'}; started {res.started}, "
        f"updated {res.updated}, complete: {res.complete}"
    )
    rounds = cfg.get("repeats") or 1
    if rounds > 1:
        method += (f"; **{rounds} interleaved rounds** (every block timed once a round, in the same order): a cell "
                   "shows its median round by end-to-end throughput, `e2e_seq_per_s_rounds` in results.csv every "
                   "round's")  # fmt: skip
    return [method, *_budget_line(cfg), ""]


def _budget_line(cfg: dict[str, Any]) -> list[str]:
    """Absent from results made before the option."""
    if "max_tokens" not in cfg:
        return []
    if cfg["max_tokens"] is None:
        from bertdeploy.runtime.options import CPU_MAX_TOKENS, GPU_MAX_TOKENS

        return [f"- **Model calls**: the runtime's default token budget ({CPU_MAX_TOKENS:,} tokens a call on ONNX "
                f"Runtime's CPU EP, {GPU_MAX_TOKENS:,} on a GPU or the OpenVINO EP), PyTorch eager and OpenVINO given "
                "the same: a batch is what one `predict()` call is handed"]  # fmt: skip
    return [f"- **Model calls**: at most {cfg['max_tokens']:,} tokens (rows x padded length) for bertdeploy, PyTorch "
            "eager and OpenVINO"]  # fmt: skip


def report_markdown(res: Report, rows: list[dict[str, Any]], plot_paths: dict[str, Path | None]) -> str:
    cfg = res.config or {}
    out = [f"# bertdeploy bench — {res.name or Path(cfg.get('output', '.')).name}", ""]
    if res.command:
        out += ["```", res.command, "```", ""]
    out += _machine_lines(res)
    out += _method_lines(res, cfg)
    task = bench_task(res.task)
    head = headline(rows, tuple(k for k, _ in task.columns))
    if head:
        out += [
            "## Headline",
            "",
            f"Task: {res.task}. Best padding per engine; p50 end to end (tokenization included) per batch; seq/s "
            f"over the timed run{'' if task.unit == 'text' else ' (q/s: questions per second)'}.",
            "",
            markdown_table(head, table_columns(task, HEADLINE)),
            "",
        ]
    out += peer_markdown(res, rows)
    for name, t in res.targets.items():
        ev, timing = t.get("eval") or {}, t.get("timing") or {}
        trained = "trained" if t.get("trained") else "**untrained** (random weights: speed only, no accuracy)"
        units = f"{task.unit}s"
        seqs = f" in {timing['mean_sequences']:.2f} sequences" if timing.get("mean_sequences") else ""
        out += [f"## {name}", ""]
        out.append(
            f"{t.get('kind')} `{t.get('spec')}`, {trained}; max_length {t.get('max_length')}; evaluation: "
            f"{ev.get('source')} [{ev.get('split')}], {ev.get('n')} {units}; timed {units}: "
            f"{timing.get('texts')} (mean {timing.get('mean_tokens', 0):.1f} tokens{seqs})"
        )
        for note in t.get("notes") or []:
            out.append(f"- note: {note}")
        mine = [r for r in rows if r["target"] == name]
        ok = [r for r in mine if r["status"] == "ok"]
        if ok:
            out += ["", f"agree vs torch: share of {task.agreement} (PyTorch fp32)", ""]
            out += [markdown_table(ok, table_columns(task))]
        bad = [r for r in mine if r["status"] != "ok"]
        seen = set()
        for r in bad:
            k = (r["backend"], r["variant"], r["status"], r.get("error"))
            if k not in seen:
                seen.add(k)
                out.append(f"- {r['status']}: {r['backend']} {r['variant']} — {r.get('error')}")
        out.append("")
    pareto = f"{task.label[:1].upper()}{task.label[1:]} vs latency (Pareto frontier)"
    for title, key in ((pareto, "pareto"), ("Throughput", "throughput")):
        if plot_paths.get(key):
            out += [f"## {title}", "", f"![{key}](plots/{plot_paths[key].name})", ""]
    if res.pick:
        out += _pick_lines(res.pick, task.label)
    return "\n".join(out)


def _pick_lines(p: dict[str, Any], label: str = "accuracy") -> list[str]:
    ref, metric = p["reference"], p.get("metric", "accuracy")
    out = [
        "## Pick",
        "",
        f"Fastest bertdeploy variant within {p['max_accuracy_drop']:g} {label} points of the reference "
        f"({ref['target']} {ref['backend']} {ref['variant']}, {ref[metric]:.4f}) at batch {p['batch_size']}: "
        f"**{p['target']} {p['variant']}** ({p['padding']} padding), p50 {p['p50_ms']:.2f} ms, {label} "
        f"{p[metric]:.4f} (drop {p[f'{metric}_drop']:.2f} points), {p['speedup_vs_reference']:.2f}x faster "
        "than the reference.",
        "",
    ]
    if p.get("bundle"):
        out += [f"Copied to `{p['bundle']}`.", ""]
    return out


def write_all(res: Report, out: Path) -> dict[str, Path]:
    """results.csv, report.md, config.json and plots/*.png in ``out`` (results.json is saved by the sweep)."""
    rows = res.rows()
    (out / "plots").mkdir(parents=True, exist_ok=True)
    task = bench_task(res.task)
    plot_paths = {
        "pareto": plots.pareto_plot(rows, out / "plots" / "pareto.png", task.metric, task.label),
        "throughput": plots.throughput_plot(
            rows, out / "plots" / "throughput.png", "sequences" if task.unit == "text" else f"{task.unit}s"
        ),
    }
    write_csv(rows, out / "results.csv")
    write_json(out / "config.json", relative_paths(res.config))
    with atomic_file(out / "report.md") as tmp:
        tmp.write_text(report_markdown(res, rows, plot_paths), encoding="utf-8")
    files = {
        "results": out / "results.json",
        "csv": out / "results.csv",
        "report": out / "report.md",
        "config": out / "config.json",
    }
    files.update({k: v for k, v in plot_paths.items() if v})
    return files
