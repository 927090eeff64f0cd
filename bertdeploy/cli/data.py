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


@command.command(name="cloze")
@click.argument("data")
@click.option("--output", "-o", required=True, help="New folder for the QA data with the cloze questions added.")
@click.option(
    "--per-paragraph", default=4, show_default=True, help="Cloze questions made from each training paragraph."
)
@click.option(
    "--per-sentence", default=1, show_default=True, help="Rounds over the sentences: questions a sentence at most."
)
@click.option(
    "--context-chars",
    default=0,
    show_default=True,
    help="Cut each cloze question's context to whole sentences around its answer, about this many characters "
    "(0: the whole paragraph). Short contexts make many questions cheap to train on.",
)
@click.option("--only", is_flag=True, help="Train on the cloze questions alone (a first stage before the real ones).")
@click.option("--seed", default=42, show_default=True, help="Seeds the phrases picked and the shuffle.")
@click.option("--overwrite", is_flag=True, help="Replace OUTPUT when it is a folder this command wrote.")
def cloze(
    data: str,
    output: str,
    per_paragraph: int,
    per_sentence: int,
    context_chars: int,
    only: bool,
    seed: int,
    overwrite: bool,
) -> object:
    """Add cloze questions from DATA's own training paragraphs to its QA training split.

    A sentence with one phrase replaced by a question word becomes a question whose answer is that phrase (numbers,
    quoted text, Latin words, recurring CJK words); a reader trained from random weights learns from them to match
    a question to its place in the paragraph. DATA is any question-answering layout; the output folder holds
    train / validation / test as flattened JSONL, for `bertdeploy train --data OUTPUT`.
    """
    from bertdeploy.data.cloze import write_cloze_data

    done = write_cloze_data(data, output, per_paragraph=per_paragraph, seed=seed, overwrite=overwrite,
                            per_sentence=per_sentence, context_chars=context_chars, only=only)  # fmt: skip
    counts = ", ".join(f"{name} {n:,}" for name, n in done.questions.items())
    render.console.print(
        f"wrote {done.output}: {done.cloze:,} cloze questions from {done.paragraphs:,} training paragraphs ({counts})"
    )
    return done
