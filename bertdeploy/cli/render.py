"""Rich rendering shared by the commands (tables of metrics)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

console = Console()
err_console = Console(stderr=True)


def fmt(v: Any, digits: int = 4) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.{digits if abs(v) < 10 else 2}f}"
    return str(v)


EPOCH_COLUMNS = [
    ("epoch", "epoch"),
    ("train_loss", "train loss"),
    ("loss", "val loss"),
    ("accuracy", "accuracy"),
    ("f1_macro", "F1 macro"),
    ("recall_macro", "recall"),
    ("precision_macro", "precision"),
]
#: the epoch table of token classification (entity-level scores, seqeval)
TOKEN_EPOCH_COLUMNS = [
    ("epoch", "epoch"),
    ("train_loss", "train loss"),
    ("loss", "val loss"),
    ("f1", "entity F1"),
    ("precision", "precision"),
    ("recall", "recall"),
    ("token_accuracy", "token acc"),
]


QA_EPOCH_COLUMNS = [
    ("epoch", "epoch"),
    ("train_loss", "train loss"),
    ("loss", "val loss"),
    ("exact_match", "EM"),
    ("f1", "F1"),
]
#: the epoch table of masked-language pretraining
MLM_EPOCH_COLUMNS = [
    ("epoch", "epoch"),
    ("train_loss", "train loss"),
    ("loss", "val loss"),
    ("perplexity", "perplexity"),
]


def epoch_row(row: dict[str, Any]) -> None:
    """Print one epoch as a one-row table (printed as it happens, so a long run shows progress)."""
    columns = (
        TOKEN_EPOCH_COLUMNS if "token_accuracy" in row else QA_EPOCH_COLUMNS if "exact_match" in row else EPOCH_COLUMNS
    )
    columns = MLM_EPOCH_COLUMNS if "perplexity" in row else columns
    table = Table(show_header=row.get("epoch", 0) <= 1.01, box=None, pad_edge=False)
    for key, title in columns:
        table.add_column(title, justify="right", min_width=10)
    table.add_row(*(fmt(row.get(k), 2 if k == "epoch" else 4) for k, _ in columns))
    console.print(table)


def final_metrics(final: dict[str, Any], labels: list[str], split: str) -> None:
    if "per_type" in final:
        return entity_metrics(final, split)
    if "confusion_matrix" not in final:  # question answering, multiple choice: a few scalars
        scalars = ", ".join(f"{k} {fmt(v)}" for k, v in final.items() if isinstance(v, float))
        return console.print(f"final scores on {split} ({final.get('n', '?')} questions): {scalars}")
    t = Table(title=f"final scores on {split} ({final.get('n', '?')} rows)")
    t.add_column("metric")
    for avg in ("macro", "micro", "weighted"):
        t.add_column(avg, justify="right")
    t.add_row("accuracy", fmt(final["accuracy"]), "", "")
    for m in ("precision", "recall", "f1"):
        t.add_row(m, *(fmt(final[f"{m}_{avg}"]) for avg in ("macro", "micro", "weighted")))
    console.print(t)
    cm = Table(title="confusion matrix (rows: true, columns: predicted)")
    cm.add_column("")
    for name in labels:
        cm.add_column(name[:10], justify="right")
    for name, row in zip(labels, final["confusion_matrix"], strict=True):
        cm.add_row(name, *map(str, row))
    console.print(cm)


def entity_metrics(final: dict[str, Any], split: str) -> None:
    """Token classification's final scores: micro entity P/R/F1, token accuracy, then one row per entity type."""
    t = Table(title=f"final scores on {split} ({final.get('n', '?')} sentences; entity level, seqeval)")
    for head in ("entity type", "precision", "recall", "F1", "support"):
        t.add_column(head, justify="left" if head == "entity type" else "right")
    t.add_row("[bold]micro[/]", fmt(final["precision"]), fmt(final["recall"]), fmt(final["f1"]), "")
    for name, r in sorted(final["per_type"].items()):
        t.add_row(name, fmt(r["precision"]), fmt(r["recall"]), fmt(r["f1"]), str(r["support"]))
    console.print(t)
    console.print(f"token accuracy {fmt(final['token_accuracy'])}")


def comparison(rows: list[dict[str, Any]], columns: list[tuple[str, str]], title: str) -> None:
    t = Table(title=title)
    for _, head in columns:
        t.add_column(head, justify="right")
    for r in rows:
        t.add_row(*(fmt(r.get(k)) for k, _ in columns))
    console.print(t)
