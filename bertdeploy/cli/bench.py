"""`bertdeploy bench TARGET... [OPTIONS]` and `bertdeploy bench compare A B`.

``bench`` is a click group whose default subcommand is ``run``: anything after ``bench`` that is not a
subcommand name (``compare``, ``run``) is handed to ``run``, so ``bertdeploy bench models/emotion --data ...``
works as written and ``bertdeploy bench --help`` shows the sweep's options. (A folder literally named
``compare`` is passed as ``./compare``.)
"""

from __future__ import annotations

import contextlib
import shlex
from collections.abc import Callable, Iterator
from typing import Any

import click

from bertdeploy.benchmark.config import BACKENDS, DEVICES, PADDINGS
from bertdeploy.benchmark.scenarios import SCENARIOS
from bertdeploy.errors import require_extra


class _BenchGroup(click.Group):
    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta["bench_argv"] = list(args)
        if not args or args[0] not in self.commands:
            args = ["run", *args]
        return super().parse_args(ctx, args)


class _DefaultCommand(click.Command):
    """The default subcommand: its usage line reads ``bertdeploy bench [OPTIONS] [TARGETS]...``."""

    def format_usage(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        prog = ctx.parent.command_path if ctx.parent else ctx.command_path
        formatter.write_usage(prog, " ".join(self.collect_usage_pieces(ctx)))


@click.group(name="bench", cls=_BenchGroup)
def command() -> None:
    """Accuracy x latency x throughput of bundles, training runs and presets, with the peers timed in the same run.

    bertdeploy bench TARGET... --data PATH --output DIR [OPTIONS]   (see bertdeploy bench --help)

    bertdeploy bench compare A B
    """


@command.command(name="run", cls=_DefaultCommand)
@click.argument("targets", nargs=-1)
@click.option("--data", help="Evaluation data (folder or file); default: the training run's own data.")
@click.option("--output", "-o", help="Output folder (results.json/csv, report.md, config.json, plots/).")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="YAML file of bench options.")
@click.option("--text-column", default=None)
@click.option("--label-column", default=None)
@click.option("--backends", help=f"Comma list of {','.join(BACKENDS)} (default: all).")
@click.option(
    "--variants",
    help="bertdeploy variants, e.g. auto,fp32,qint8 (auto: what load() picks here; default: every accepted one).",
)
@click.option("--torch-dtypes", help="fp32,bf16,int8 (bf16 is skipped on a CPU without native bf16; int8: dynamic).")
@click.option("--openvino-variants", help="Bundle variants OpenVINO reads, and/or nncf (default: fp32,nncf).")
@click.option("--padding", help=f"Comma list of {','.join(PADDINGS)} (default: all).")
@click.option("--batch-sizes", help="Comma list, e.g. 1,8,32,128 (default: 1,8,32).")
@click.option("--max-length", type=int, help="Truncation / static padding length (default: the model's).")
@click.option("--threads", type=int, help="Intra-op threads for every engine (default: all CPUs).")
@click.option(
    "--max-tokens",
    type=int,
    help="Tokens a model call of bertdeploy, PyTorch eager and OpenVINO may hold (default: the runtime's own, "
    "1,024 on the CPU EP: a batch is what one predict() call is handed; largest batch x max length: a call per batch).",
)
@click.option("--device", type=click.Choice(DEVICES), default=None)
@click.option("--min-seconds", type=float, help="Time each cell (whole-file: round) at least this long (default 2).")
@click.option("--min-iterations", type=int, help="... and at least this many batches (default 10).")
@click.option("--warmup", "warmup_iterations", type=int, help="Untimed warm-up batches (default 3).")
@click.option("--max-seconds", type=float, help="Cap per timed loop (default 60).")
@click.option("--model-only/--no-model-only", default=None, help="Also time the model on pre-tokenized input.")
@click.option("--gemm-seconds", type=float, help="Time per shape for the fp32 GEMM peak (0: skip; default 0.5).")
@click.option("--timing-texts", type=int, help="Texts the timed loops cycle through (default 512).")
@click.option("--eval-limit", type=int, help="Score the task's metric on at most N records.")
@click.option("--export/--no-export", default=None, help="Export a training run on the fly to time its variants.")
@click.option("--isolation", type=click.Choice(["process", "inline"]), default=None)
@click.option("--resume/--no-resume", default=None, help="Reuse finished cells in OUTPUT (default: on).")
@click.option("--overwrite", is_flag=True, default=None, help="Discard earlier results in OUTPUT.")
@click.option("--pick", is_flag=True, default=None, help="Name the fastest variant within --max-accuracy-drop.")
@click.option("--max-accuracy-drop", help="Points of the task's metric --pick may lose: 1.0 or 1% (default 1.0).")
@click.option("--pick-batch-size", type=int, help="Batch size the pick compares (default: the smallest).")
@click.option("--pick-tolerance", type=float, help="Latencies within this share of the fastest tie (default 0.05).")
@click.option("--pick-output", help="Copy the picked variant into a new bundle here.")
@click.option("--keep-work", is_flag=True, default=None, help="Keep OUTPUT/.work (saved presets, temp bundles).")
@click.option("--name", help="Label of this result set (shown by bench compare).")
@click.option("--seed", type=int)
@click.option(
    "--scenario",
    type=click.Choice(SCENARIOS),
    default="cells",
    help="cells: the grid above; whole-file: --engines over every text of --data, each in its own process; serve: "
    "`bertdeploy serve` under concurrent clients beside offline predict.",
)
@click.option("--engines", help="whole-file: BACKEND:VARIANT[:PADDING[:streams=N]], comma-separated.")
@click.option("--latency", type=int, help="whole-file: also time the first N texts one call each (batch 1).")
@click.option("--clients", help="serve: comma list of concurrent clients (default 1,8,32).")
@click.option(
    "--repeats",
    type=int,
    help="Interleaved rounds. cells: every block timed once a round, a cell keeps its median round (default 1); "
    "serve, whole-file: each engine keeps its best (default 3).",
)
@click.option("--texts", type=int, help="serve, whole-file: only the first N texts of --data.")
@click.option("--serve-args", help="serve: more `bertdeploy serve` options, e.g. '--streams 1'.")
@click.pass_context
def run(ctx: click.Context, targets: tuple[str, ...], config_file: str | None, **opts: Any) -> object:
    """Time TARGET... (bundles, training runs or model presets) across backends x variants x padding x batch.

    Any BenchConfig key can also be given as KEY=VALUE among the targets (e.g. min_seconds=0.5) or in a --config
    YAML file; options win over the file, KEY=VALUE over both.
    Compare two result folders with: bertdeploy bench compare A B
    """
    scenario = opts.pop("scenario")
    scenario_opts = {k: opts.pop(k) for k in ("clients", "repeats", "texts", "serve_args", "engines", "latency")}
    opts["repeats"] = scenario_opts["repeats"]
    argv = ctx.parent.meta.get("bench_argv", []) if ctx.parent else []
    if scenario != "cells":
        from bertdeploy.cli.bench_scenario import run_scenario

        command_line = shlex.join(["bertdeploy", "bench", *argv])
        return run_scenario(scenario, list(targets), {**opts, **scenario_opts}, command_line)
    require_extra("train", "bertdeploy bench")
    from bertdeploy.benchmark import BenchConfig, bench

    overrides = [t for t in targets if _is_override(t, BenchConfig)]
    paths = [t for t in targets if t not in overrides]
    if paths:
        opts["targets"] = paths
    opts["command"] = shlex.join(["bertdeploy", "bench", *argv])
    cfg = BenchConfig.load(config_file, opts, overrides)
    with _progress() as on_event:
        result = bench(cfg, progress=on_event)
    _summary(result)
    return result


def _is_override(arg: str, config: Any) -> bool:
    """``key=value`` whose key is a field of ``config`` (anything else is a target path)."""
    key, sep, _ = arg.partition("=")
    return bool(sep) and key.replace("-", "_") in config.fields()


@command.command(name="compare")
@click.argument("a")
@click.argument("b")
def compare_cmd(a: str, b: str) -> object:
    """Ratios B/A between two result sets (folders holding results.json, or the files)."""
    from bertdeploy.benchmark import compare

    result = compare(a, b)
    _comparison(result)
    return result


# ---------------------------------------------------------------- rendering (rich)


def _f(value: Any, spec: str) -> str:
    return "–" if value is None else spec.format(value)


@contextlib.contextmanager
def _progress() -> Iterator[Callable[[dict[str, Any]], None]]:
    """A progress bar over the grid's cells (on stderr), fed by the sweep's events."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from bertdeploy.cli.render import err_console
    from bertdeploy.progress import bars_enabled

    bar = Progress(
        TextColumn("[bold]bench[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.description}"),
        console=err_console,
        disable=not bars_enabled(),
    )
    task = bar.add_task("planning", total=None)
    failed = 0

    def on_event(ev: dict[str, Any]) -> None:
        nonlocal failed
        if ev["type"] == "plan":
            bar.update(task, total=ev["total"], completed=ev["done"])
        elif ev["type"] == "stage":
            bar.update(task, description=ev["message"])
        elif ev["type"] == "cell_start":
            bar.update(task, description=ev["key"].replace("|", " "))
        elif ev["type"] == "cell":
            bar.advance(task, ev.get("weight", 1))
            if ev["cell"]["status"] == "failed":
                failed += 1
                first = (ev["cell"].get("error") or "").splitlines()[:1]
                bar.console.print(f"[red]failed[/] {ev['cell']['key']}: {first[0] if first else ''}")

    def start_on_plan(ev: dict[str, Any]) -> None:
        if ev["type"] == "plan" and not bar.live.is_started:
            bar.start()
        on_event(ev)

    try:
        yield start_on_plan
    finally:
        if bar.live.is_started:  # refused before the plan: the error is the only line
            bar.stop()


def _columns(task: Any) -> list[tuple[str, str, str]]:
    """The summary table's columns: timings, the task's primary metric (and EM), agreement."""
    return [
        ("engine", "engine", "{}"),
        ("padding", "padding", "{}"),
        ("batch", "batch_size", "{}"),
        ("p50 ms", "e2e_p50_ms", "{:.2f}"),
        ("p99 ms", "e2e_p99_ms", "{:.2f}"),
        ("seq/s", "e2e_seq_per_s", "{:.0f}"),
        ("model", "model_p50_ms", "{:.2f}"),
        ("peak", "peak_share", "{:.0%}"),
        *(
            (title if key != "accuracy" else "acc", key, "{:.4f}")
            for key, title in task.columns
            if key in (task.metric, "exact_match")
        ),
        ("agree", "agreement_torch", "{:.3f}"),
        *([(f"= {task.peer[0]}", "agreement_peer", "{:.3f}")] if task.peer and task.peer[0] != "torch" else []),
    ]


def _summary(result: Any) -> None:
    from rich.table import Table

    from bertdeploy.benchmark.scoring import bench_task
    from bertdeploy.cli.render import console

    task = bench_task(result.report.task)
    cols = _columns(task)
    for target in dict.fromkeys(r["target"] for r in result.rows):
        ok = [r for r in result.rows if r["target"] == target and r["status"] == "ok"]
        if not ok:
            continue
        t = Table(
            title=f"{target} (ms per batch; model = without tokenization)",
            header_style="bold",
            box=None,
            pad_edge=False,
            collapse_padding=True,
        )
        for title, _, _ in cols:
            t.add_column(title, justify="left" if title in ("engine", "padding") else "right", no_wrap=True)
        for r in ok:
            engine = r["variant"] if r["backend"] == "bertdeploy" else f"{r['backend']}-{r['variant']}"
            t.add_row(*(_f({**r, "engine": engine}.get(k), spec) for _, k, spec in cols))
        console.print(t)
    _problems(result.rows)
    from bertdeploy.benchmark.report import cpu_features

    m, g = result.report.machine, result.report.gemm
    console.print(
        f"machine: {m.get('cpu')} ({cpu_features(m)}), {m.get('threads')} threads; "
        f"load {result.report.load.get('start')}; "
        f"fp32 GEMM peak {_f(g.get('peak_gflops'), '{:.1f}')} GFLOP/s"
    )
    _peers(result.report, result.rows)
    if result.pick:
        p, m = result.pick, result.pick.get("metric", "accuracy")
        console.print(
            f"[bold green]pick[/]: {p['target']} {p['variant']} ({p['padding']}) — p50 {p['p50_ms']:.2f} ms at batch "
            f"{p['batch_size']}, {task.label} {p[m]:.4f} (drop {p[f'{m}_drop']:.2f} <= "
            f"{p['max_accuracy_drop']:g} points), {p['speedup_vs_reference']:.2f}x vs {p['reference']['backend']} "
            f"{p['reference']['variant']}" + (f"; copied to {p['bundle']}" if p.get("bundle") else "")
        )
    console.print("wrote " + ", ".join(str(f) for f in result.files.values()))
    if not result.complete:
        console.print("[yellow]some cells failed: run the same command again to retry them[/]")


def _problems(rows: list[dict[str, Any]]) -> None:
    """One line per skipped or failed block (and reason)."""
    from bertdeploy.cli.render import console

    seen = set()
    for r in rows:
        key = (r["target"], r["backend"], r["variant"], r["status"], r.get("error"))
        if r["status"] != "ok" and key not in seen:
            seen.add(key)
            colour = "yellow" if r["status"] == "skipped" else "red"
            console.print(f"[{colour}]{r['status']}[/] {r['target']} {r['backend']} {r['variant']}: {r.get('error')}")


def _peers(report: Any, rows: list[dict[str, Any]]) -> None:
    """The goal numbers against the task's peer (throughput ratio, metric, agreement), one line per engine."""
    from bertdeploy.benchmark.scoring import bench_task
    from bertdeploy.benchmark.summary import engine_name, peer_rows
    from bertdeploy.cli.render import console

    task = bench_task(report.task)
    for r in peer_rows(report, rows):
        ratios = ", ".join(f"b{bs} {_f(x, '{:.2f}x')}" for bs, x in r["vs_peer"].items())
        console.print(
            f"{r['target']} {r['engine']}: {task.label} {_f(r['metrics'][task.metric], '{:.4f}')} "
            f"(Δ fp32 {_f(r['delta_points'].get(task.metric), '{:+.2f}')} pt), "
            f"= torch fp32 {_f(r['agreement_torch'], '{:.3f}')}, "
            f"= {engine_name(*task.peer)} {_f(r['agreement_peer'], '{:.3f}')}; vs {engine_name(*task.peer)}: {ratios}"
        )


def _comparison(c: Any) -> None:
    from rich.table import Table

    from bertdeploy.cli.render import console

    for side, meta in (("A", c.a), ("B", c.b)):
        console.print(
            f"{side}: {meta['name']} ({meta['path']}) — {meta['cpu']}, {meta['threads']} threads, load {meta['load']}, "
            f"GEMM peak {_f(meta['gemm_peak'], '{:.1f}')} GFLOP/s"
        )
    t = Table(
        title=f"B / A: {len(c.rows)} common cells, matched on {c.matched_on}",
        header_style="bold",
        box=None,
        pad_edge=False,
        collapse_padding=True,
    )
    delta = "Δacc" if c.metric == "accuracy" else f"Δ{c.metric}"
    cols = ("target", "backend", "variant", "pad", "batch", "A p50", "B p50", "p50", "p99", "seq/s", "model", delta)
    for title in cols:
        t.add_column(title, justify="left" if title in cols[:4] else "right", no_wrap=True)
    for r in c.rows:
        t.add_row(
            r["target"],
            r["backend"],
            r["variant"],
            r["padding"][:3],
            str(r["batch_size"]),
            _f(r["a_p50_ms"], "{:.2f}"),
            _f(r["b_p50_ms"], "{:.2f}"),
            _f(r["p50_ratio"], "{:.2f}x"),
            _f(r["p99_ratio"], "{:.2f}x"),
            _f(r["throughput_ratio"], "{:.2f}x"),
            _f(r["model_p50_ratio"], "{:.2f}x"),
            _f(r[f"{c.metric}_delta"], "{:+.4f}"),
        )
    console.print(t)
    console.print("ratios are B/A: p50/p99/model latency < 1x and seq/s > 1x mean B is faster; A/B p50 in ms")
    if c.only_a or c.only_b:
        console.print(f"not compared: {c.only_a} cell(s) only in A, {c.only_b} only in B")
