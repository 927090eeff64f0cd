"""``bertdeploy data``: dataset inspection (``data stats``)."""

from __future__ import annotations

import click
from rich.table import Table

from bertdeploy.cli import render
from bertdeploy.errors import require_extra


@click.group(name="data")
def command() -> None:
    """Inspect a dataset before training."""


@command.command(name="stats")
@click.option("--data", required=True, help="Folder, file or Hub dataset id.")
@click.option("--model", default="minilm-l6", show_default=True, help="Model spec whose tokenizer counts tokens.")
@click.option("--text-column", default="text", show_default=True)
@click.option("--label-column", default="label", show_default=True)
@click.option(
    "--task",
    type=click.Choice(["text-classification", "token-classification", "question-answering", "multiple-choice"]),
    help="The task (default: from the data's layout); needed where a layout serves two (drcd_select).",
)
@click.option("--plot", type=click.Path(dir_okay=False), help="Also write a token-length histogram to this PNG file.")
def stats(data: str, model: str, text_column: str, label_column: str, task: str | None, plot: str | None) -> object:
    """Rows, label counts, token-length percentiles and padding waste."""
    require_extra("train", "bertdeploy data stats")

    from bertdeploy.training.data_stats import data_stats
    from bertdeploy.training.vocab import DEFAULT_MAX_UNK_RATE

    s = data_stats(data, model, text_column, label_column, plot=plot, task=task)
    per = "tokens per tag" if s.task == "token-classification" else "rows per label"
    t = Table(title=f"{s.source}: {per}" if s.labels else f"{s.source}: rows")
    t.add_column("label")
    for split in s.rows:
        t.add_column(split, justify="right")
    for label in s.labels:
        t.add_row(label, *(str(s.label_counts[split][label]) for split in s.rows))
    t.add_row("[bold]rows", *(f"[bold]{n}" for n in s.rows.values()))
    render.console.print(t)
    p = Table(title="token length (train)")
    for k in [*s.length_percentiles, "mean"]:
        p.add_column(k, justify="right")
    p.add_row(*map(str, s.length_percentiles.values()), f"{s.mean_length:.1f}")
    render.console.print(p)
    w = Table(title="padding waste (share of fed tokens that are padding)")
    w.add_column("strategy")
    w.add_column("waste", justify="right")
    for k, v in s.padding_waste.items():
        w.add_row(k, f"{v:.1%}")
    render.console.print(w)
    render.console.print(
        f"max_length covering 95 % of rows: [bold]{s.cover['p95']}[/]; 99 %: [bold]{s.cover['p99']}[/]"
        + (f" · histogram: {s.plot}" if s.plot else "")
    )
    limit = DEFAULT_MAX_UNK_RATE
    flag = (
        f" [bold red](train refuses above {limit:.0%}: --from-scratch --vocab-from-data)[/]"
        if s.unk_rate > limit
        else ""
    )
    render.console.print(
        f"[UNK] tokens with the {model} tokenizer: [bold]{s.unk_rate:.2%}[/] of the training tokens{flag}"
    )
    return s
