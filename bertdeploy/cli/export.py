"""`bertdeploy export RUN_DIR --output BUNDLE`: parse, call :func:`bertdeploy.exporter.export`, render the table."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from bertdeploy import variants
from bertdeploy.cli import output
from bertdeploy.errors import require_extra
from bertdeploy.machine import ISAS


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


#: the score columns of the table, per task (keys of the rows / of the PyTorch baseline)
_SCORES = {
    "text-classification": (("accuracy", "accuracy"), ("f1_macro", "F1 macro")),
    "token-classification": (("f1", "entity F1"), ("token_accuracy", "token acc")),
    "question-answering": (("exact_match", "EM"), ("f1", "F1")),
    "multiple-choice": (("accuracy", "accuracy"),),
}


def _verdict(row: dict) -> str:
    if row["accepted"]:
        return "[green]accepted[/]"
    return "[yellow]skipped[/]" if row.get("skipped") else "[red]REJECTED[/]"


def render(result, console) -> None:  # noqa: ANN001 - ExportResult, rich Console (imported lazily)
    from rich.markup import escape
    from rich.table import Table

    base = result.baseline
    scores = _SCORES.get(result.manifest.get("task"), _SCORES["text-classification"])
    table = Table(title=f"bundle {result.bundle}", title_justify="left")
    for col in ("variant", "size MB", "max diff", "agree", *(label for _, label in scores), "verdict"):
        table.add_column(col, justify="left" if col in ("variant", "verdict") else "right", no_wrap=True)
    if base:
        table.add_row("pytorch", "", "", "", *(_fmt(base.get(k), ".4f") for k, _ in scores), "ref")
    for r in result.rows:
        table.add_row(
            r["name"],
            _fmt(r["size_mb"], ".2f"),
            _fmt(r["max_diff"], ".1e"),
            _fmt(r["agreement"], ".2%"),
            *(_fmt(r.get(k), ".4f") for k, _ in scores),
            _verdict(r),
        )
    console.print(table)
    ev = result.manifest["eval"]
    console.print(
        f"eval: {ev['rows']} {ev['split']} rows of {ev['data']}; parity on {ev['parity_rows']} rows; "
        f"int8 for {result.manifest['machine']['isa']}"
    )
    for r in result.rows:
        if not r["accepted"] and not r.get("skipped"):  # a skipped one is told in the notes
            console.print(f"[red]rejected {r['name']}:[/] {escape(r['reason'])}")
    for r in result.rows:
        if r["fused_nodes"] and variants.get(r["name"]).precision != "int8":
            counts = ", ".join(f"{k} {v}" for k, v in r["fused_nodes"].items())
            console.print(f"[dim]fused {r['name']}: {counts}[/]")
    for note in result.notes:
        console.print(f"[dim]note: {escape(note)}[/]")
    for r in result.rows:
        for note in r["notes"]:
            if "did not fuse" in note or "meant for CUDA" in note:
                console.print(f"[yellow]{r['name']}: {note}[/]")


def _variant_flags(f: Callable) -> Callable:
    """One ``--<flag>`` per variant of the table that has one (``--fp16``, ``--int8`` ...)."""
    for spec in reversed(variants.with_flag()):
        f = click.option(spec.cli_flag, f"flag_{spec.name}", is_flag=True, default=False, help=spec.help)(f)
    return f


@click.command(name="export")
@click.argument("run_dir", type=click.Path(file_okay=True, dir_okay=True))
@click.argument("overrides", nargs=-1)
@click.option("--output", "-o", type=click.Path(), help="Bundle folder to create.")
@click.option(
    "--optimize",
    "levels",
    multiple=True,
    type=click.Choice(variants.by_build("optimize")),
    help="Graph-optimized variant(s) (ORTOptimizer); repeatable.",
)
@_variant_flags
@click.option("--all", "all_", is_flag=True, help="Every variant; rejected ones are listed, not fatal.")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="YAML file of ExportConfig keys.")
@click.option("--opset", type=int, default=None, help="ONNX opset (default: Optimum's).")
@click.option("--data", type=str, default=None, help="Evaluation data (default: the run's own).")
@click.option("--text-column", default=None, help="Text column of --data (default: the run's, else 'text').")
@click.option("--label-column", default=None, help="Label column of --data (default: the run's, else 'label').")
@click.option("--calibration-size", type=int, default=None, help="Rows for static int8 (default 200).")
@click.option("--max-accuracy-drop", default=None, help="Accuracy points int8 may lose: 1.0 or 1% (default 1.0).")
@click.option("--parity-rows", type=int, default=None, help="K rows compared with PyTorch (default: all eval rows).")
@click.option("--max-length", type=int, default=None, help="Token limit (default: the run's).")
@click.option("--isa", type=click.Choice(ISAS), default=None, help="int8 ISA (default: detected).")
@click.option(
    "--per-channel/--per-tensor", default=None, help="int8 weight scales per channel (default) or per tensor."
)
@click.option(
    "--int8-weights",
    type=click.Choice(["int8", "uint8"]),
    default=None,
    help="Dynamic int8 weight type (default int8); uint8 avoids AVX2 saturation on models with huge weights "
    "(~20% slower).",
)
@click.option(
    "--cls-only/--all-positions",
    default=None,
    help="Compute the last encoder layer for [CLS] only (default; BERT; same logits, ~5/6 of a layer less work).",
)
@click.option("--force", is_flag=True, default=None, help="Replace an existing bundle.")
def command(
    run_dir: str,
    overrides: tuple[str, ...],
    levels: tuple[str, ...],
    all_: bool,
    config_file: str | None,
    **options: Any,
) -> object:
    """Export RUN_DIR to ONNX variants, validate each against PyTorch and on the eval data, write a bundle.

    \b
    Example:
      bertdeploy export runs/emotion -o models/emotion --optimize O2 --int8
      bertdeploy export runs/emotion -o models/emotion --all max_accuracy_drop=0.5 calibration_size=400

    Any ExportConfig key can be given as KEY=VALUE or in a --config YAML file (options win over the file,
    KEY=VALUE over both). Variants that fail the gate are left out and listed; the exit code is 1 when a variant
    you asked for explicitly (not via --all) was rejected.
    """
    require_extra("train", "bertdeploy export")
    from rich.console import Console

    from bertdeploy.exporter import ExportConfig, export

    flags = [spec.name for spec in variants.with_flag() if options.pop(f"flag_{spec.name}")]
    explicit = [variants.BASE, *levels, *flags]
    options["run_dir"] = run_dir
    if all_ or len(explicit) > 1:
        options["variants"] = list(variants.NAMES) if all_ else explicit
        options["required"] = explicit
    config = ExportConfig.load(config_file, options, overrides)
    err = Console(stderr=True)
    with err.status("exporting") as status:
        result = export(config, progress=lambda msg: status.update(msg))
    render(result, Console())
    failed = result.failed_required
    if failed:
        names = ", ".join(f"{r['name']} ({r['reason']})" for r in failed)
        output.set_result(result)
        output.fail(click.get_current_context(), f"error: requested variant(s) rejected: {names}", 1)
    return result
