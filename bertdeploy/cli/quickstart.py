"""``bertdeploy quickstart``: train → export → bench on the embedded default, offline."""

from __future__ import annotations

import click

from bertdeploy.cli import render
from bertdeploy.errors import require_extra


@click.command(name="quickstart")
@click.option("--output", "-o", default="models/quickstart", show_default=True, help="Folder for run, bundle, bench.")
@click.option("--epochs", default=5.0, show_default=True, type=float)
def command(output: str, epochs: float) -> object:
    """Fine-tune the packaged all-MiniLM-L6-v2 on the packaged sample dataset, export and validate its ONNX
    variants, benchmark them against PyTorch, and print the result table. Runs offline in a few minutes."""
    require_extra("train", "bertdeploy quickstart")
    from bertdeploy.quickstart import quickstart

    result = quickstart(
        output, epochs=epochs, on_stage=lambda m: render.console.rule(f"[bold]{m}"), on_epoch=render.epoch_row
    )
    t = result.train
    render.final_metrics(t.final, t.labels, t.eval_split)
    for r in result.export.rows:
        r.setdefault("verdict", "accepted" if r["accepted"] else f"rejected: {r.get('reason')}")
    render.comparison(
        result.export.rows,
        [("name", "variant"), ("size_mb", "MB"), ("max_diff", "max |Δlogit|"), ("agreement", "agreement"),
         ("accuracy", "accuracy"), ("f1_macro", "F1 macro"), ("verdict", "verdict")],
        "exported variants (validated against PyTorch)",
    )  # fmt: skip
    rows = [r for r in result.bench.rows if r.get("status") == "ok"]
    render.comparison(
        rows,
        [("backend", "backend"), ("variant", "variant"), ("batch_size", "batch"), ("e2e_p50_ms", "p50 ms"),
         ("e2e_seq_per_s", "texts/s"), ("accuracy", "accuracy"), ("agreement_torch", "= torch")],
        "benchmark (end to end, with tokenization)",
    )  # fmt: skip
    secs = " · ".join(f"{k} {v:.0f} s" for k, v in result.seconds.items())
    render.console.print(f"done in {sum(result.seconds.values()):.0f} s ({secs}) → {result.root}")
    return result
