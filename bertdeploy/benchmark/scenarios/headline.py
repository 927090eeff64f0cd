"""The README's headline block from a ``cells`` result set: ``python -m bertdeploy.benchmark.scenarios.headline
RESULTS_DIR README.md`` rewrites the table between ``<!-- issue12-headline:start -->`` and ``...:end -->`` with the
best cell per (model, engine) of RESULTS_DIR/results.json (what ``benchmarks/runtime/measure.py --readme`` did)."""

from __future__ import annotations

import sys
from pathlib import Path

from bertdeploy.benchmark.report import headline, markdown_table
from bertdeploy.benchmark.results import Report
from bertdeploy.errors import UserError
from bertdeploy.outputs import atomic_file

START, END = "<!-- issue12-headline:start -->", "<!-- issue12-headline:end -->"
COLUMNS = [
    ("model", "target", None),
    ("engine", "engine", None),
    ("size MB", "size_mb", "{:.1f}"),
    ("p50 ms, batch 1", "p50", None),
    ("seq/s, batch 32", "seq_s", None),
    ("model-only seq/s", "model_seq_s", "{:.1f}"),
    ("accuracy", "accuracy", "{:.4f}"),
    ("agree vs torch", "agreement_torch", "{:.4f}"),
]


def headline_table(results_dir: str | Path) -> str:
    """The headline Markdown table of the result set in ``results_dir``."""
    report = Report.read(Path(results_dir) / "results.json")
    if report is None:
        raise UserError(f"{results_dir}: no results.json of a bench run")
    return markdown_table(headline(report.rows()), COLUMNS)


def update_readme(results_dir: str | Path, readme: str | Path) -> None:
    """Replace the headline block of ``readme`` with :func:`headline_table` of ``results_dir``."""
    body = Path(readme).read_text(encoding="utf-8")
    if START not in body or END not in body:
        raise UserError(f"{readme} has no {START} ... {END} block")
    head, rest = body.split(START, 1)
    text = head + START + "\n" + headline_table(results_dir) + "\n" + END + rest.split(END, 1)[1]
    with atomic_file(readme) as tmp:
        tmp.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    update_readme(*sys.argv[1:3])
