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


def epoch_row(row: dict[str, Any]) -> None:
    """Print one epoch as a one-row table (printed as it happens, so a long run shows progress)."""
    table = Table(show_header=row.get("epoch", 0) <= 1.01, box=None, pad_edge=False)
    for key, title in EPOCH_COLUMNS:
        table.add_column(title, justify="right", min_width=10)
    table.add_row(*(fmt(row.get(k), 2 if k == "epoch" else 4) for k, _ in EPOCH_COLUMNS))
    console.print(table)


def final_metrics(final: dict[str, Any], labels: list[str], split: str) -> None:
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


def comparison(rows: list[dict[str, Any]], columns: list[tuple[str, str]], title: str) -> None:
    t = Table(title=title)
    for _, head in columns:
        t.add_column(head, justify="right")
    for r in rows:
        t.add_row(*(fmt(r.get(k)) for k, _ in columns))
    console.print(t)
