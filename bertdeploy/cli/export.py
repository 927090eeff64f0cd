"""`bertdeploy export RUN_DIR --output BUNDLE`: parse, call :func:`bertdeploy.exporter.export`, render the table."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator

import click

ALL = ["fp32", "O1", "O2", "O3", "fp16", "qint8", "qint8_static"]


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM like Ctrl-C while exporting, so the temporary bundle and scratch files are cleaned up."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (e.g. called from a worker): leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def render(result, console) -> None:  # noqa: ANN001 - ExportResult, rich Console (imported lazily)
    from rich.table import Table

    base = result.baseline
    table = Table(title=f"bundle {result.bundle}", title_justify="left")
    for col in ("variant", "size MB", "max diff", "agree", "accuracy", "F1 macro", "verdict"):
        table.add_column(col, justify="left" if col in ("variant", "verdict") else "right", no_wrap=True)
    if base:
        table.add_row("pytorch", "", "", "", _fmt(base["accuracy"], ".4f"), _fmt(base["f1_macro"], ".4f"), "ref")
    for r in result.rows:
        table.add_row(
            r["name"],
            _fmt(r["size_mb"], ".2f"),
            _fmt(r["max_diff"], ".1e"),
            _fmt(r["agreement"], ".2%"),
            _fmt(r["accuracy"], ".4f"),
            _fmt(r["f1_macro"], ".4f"),
            "[green]accepted[/]" if r["accepted"] else "[red]REJECTED[/]",
        )
    console.print(table)
    ev = result.manifest["eval"]
    console.print(
        f"eval: {ev['rows']} {ev['split']} rows of {ev['data']}; parity on {ev['parity_rows']} rows; "
        f"int8 for {result.manifest['machine']['isa']}"
    )
    for r in result.rows:
        if not r["accepted"]:
            console.print(f"[red]rejected {r['name']}:[/] {r['reason']}")
    for r in result.rows:
        if r["fused_nodes"] and r["name"] in ("O1", "O2", "O3", "fp16"):
            counts = ", ".join(f"{k} {v}" for k, v in r["fused_nodes"].items())
            console.print(f"[dim]fused {r['name']}: {counts}[/]")
    for note in result.notes:
        console.print(f"[dim]note: {note}[/]")
    for r in result.rows:
        for note in r["notes"]:
            if "did not fuse" in note or "meant for CUDA" in note:
                console.print(f"[yellow]{r['name']}: {note}[/]")


@click.command(name="export")
@click.argument("run_dir", type=click.Path(file_okay=True, dir_okay=True))
@click.option("--output", "-o", required=True, type=click.Path(), help="Bundle folder to create.")
@click.option(
    "--optimize",
    "levels",
    multiple=True,
    type=click.Choice(["O1", "O2", "O3"]),
    help="Graph-optimized variant(s) (ORTOptimizer); repeatable.",
)
@click.option("--fp16", is_flag=True, help="Half-precision variant (for CUDA; validated on CPU).")
@click.option("--int8", is_flag=True, help="Dynamic int8 for this CPU's instruction set.")
@click.option("--int8-static", is_flag=True, help="Static int8, calibrated on training rows.")
@click.option("--all", "all_", is_flag=True, help="Every variant; rejected ones are listed, not fatal.")
@click.option("--opset", type=int, default=None, help="ONNX opset (default: Optimum's).")
@click.option("--data", type=str, default=None, help="Evaluation data (default: the run's own).")
@click.option("--text-column", default=None, help="Text column of --data (default: the run's, else 'text').")
@click.option("--label-column", default=None, help="Label column of --data (default: the run's, else 'label').")
@click.option("--calibration-size", type=int, default=200, show_default=True, help="Rows for --int8-static.")
@click.option("--max-accuracy-drop", type=float, default=1.0, show_default=True, help="Accuracy points int8 may lose.")
@click.option("--parity-rows", type=int, default=None, help="K rows compared with PyTorch (default: all eval rows).")
@click.option("--max-length", type=int, default=None, help="Token limit (default: the run's).")
@click.option("--isa", type=click.Choice(["avx512_vnni", "avx512", "avx2", "arm64"]), default=None, help="int8 ISA.")
@click.option(
    "--per-channel/--per-tensor", default=True, show_default=True, help="int8 weight scales per channel or per tensor."
)
@click.option(
    "--int8-weights",
    type=click.Choice(["int8", "uint8"]),
    default="int8",
    show_default=True,
    help="Dynamic int8 weight type; uint8 avoids AVX2 saturation on models with huge weights (~20% slower).",
)
@click.option(
    "--cls-only/--all-positions",
    default=True,
    show_default=True,
    help="Compute the last encoder layer for [CLS] only (BERT; same logits, ~5/6 of a layer less work).",
)
@click.option("--force", is_flag=True, help="Replace an existing bundle.")
def command(
    run_dir: str,
    output: str,
    levels: tuple[str, ...],
    fp16: bool,
    int8: bool,
    int8_static: bool,
    all_: bool,
    opset: int | None,
    data: str | None,
    text_column: str | None,
    label_column: str | None,
    calibration_size: int,
    max_accuracy_drop: float,
    parity_rows: int | None,
    max_length: int | None,
    isa: str | None,
    per_channel: bool,
    int8_weights: str,
    cls_only: bool,
    force: bool,
) -> None:
    """Export RUN_DIR to ONNX variants, validate each against PyTorch and on the eval data, write a bundle.

    \b
    Example:
      bertdeploy export runs/emotion -o models/emotion --optimize O2 --int8

    Variants that fail the gate are left out and listed; the exit code is 1 when a variant you asked for
    explicitly (not via --all) was rejected.
    """
    from rich.console import Console

    from bertdeploy.exporter import ExportConfig, export

    explicit = ["fp32", *levels]
    explicit += ["fp16"] if fp16 else []
    explicit += ["qint8"] if int8 else []
    explicit += ["qint8_static"] if int8_static else []
    config = ExportConfig(
        run_dir=run_dir,
        output=output,
        variants=ALL if all_ else explicit,
        required=explicit,
        data=data,
        text_column=text_column,
        label_column=label_column,
        opset=opset,
        max_length=max_length,
        calibration_size=calibration_size,
        max_accuracy_drop=max_accuracy_drop,
        parity_rows=parity_rows,
        isa=isa,
        per_channel=per_channel,
        int8_weights=int8_weights,
        cls_only=cls_only,
        force=force,
    )
    err = Console(stderr=True)
    with _sigterm_as_interrupt(), err.status("exporting") as status:
        result = export(config, progress=lambda msg: status.update(msg))
    render(result, Console())
    failed = result.failed_required
    if failed:
        names = ", ".join(f"{r['name']} ({r['reason']})" for r in failed)
        click.echo(f"error: requested variant(s) rejected: {names}", err=True)
        click.get_current_context().exit(1)
