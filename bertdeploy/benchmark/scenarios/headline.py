"""The README's headline block from ``whole-file`` runs: ``python -m bertdeploy.benchmark.scenarios.headline README.md
RUN_DIR [RUN_DIR ...]`` rewrites the table between ``<!-- runtime-headline:start -->`` and ``...:end -->`` with one
row per engine of each run (``RUN_DIR/results.json``): throughput, how it stands against the best peer (the fastest
engine that is not bertdeploy) and how often its labels equal PyTorch fp32's (the ``pipeline:fp32`` or
``torch:fp32`` engine of the run, else its first)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from bertdeploy.benchmark.scenarios.whole_file import label_agreement
from bertdeploy.errors import UserError
from bertdeploy.outputs import atomic_file

START, END = "<!-- runtime-headline:start -->", "<!-- runtime-headline:end -->"
HEADER = (
    "| model | engine | texts/s best / median | x best peer | batch-1 p50 ms | accuracy | labels = PyTorch fp32 |\n"
    "|---|---|---:|---:|---:|---:|---:|"
)
#: engines whose labels are PyTorch fp32's, in preference order
REFERENCES = ("pipeline:fp32", "torch:fp32")


def _read(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / "results.json"
    try:
        res = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise UserError(f"{run_dir}: no results.json of a whole-file run ({e})") from None
    if res.get("scenario") != "whole-file" or not res.get("runs"):
        raise UserError(f"{path}: not the results of a whole-file run")
    return res


def _rows(res: dict[str, Any]) -> list[str]:
    runs = res["runs"]
    by = {r["engine"]: r for r in runs}
    ref = next((by[e] for e in REFERENCES if e in by), runs[0])
    peers = [r for r in runs if not r["engine"].startswith("bertdeploy:")]
    best = max(peers, key=lambda r: r["texts_per_s"]) if peers else None
    model = Path(res["config"]["bundle"]).name
    rows = []
    for r in runs:
        chosen = (r.get("info") or {}).get("variant")
        engine = f"`{r['engine']}`"
        if r["engine"] == "bertdeploy:auto":
            engine = f"**`load(bundle)` default** ({chosen})"
        same = label_agreement(r, ref)
        ours = best is not None and r["engine"].startswith("bertdeploy:")
        b1 = r.get("batch1")
        cells = [
            model,
            engine,
            f"{r['texts_per_s']:,.0f} / {r['texts_per_s_median']:,.0f}",
            f"{r['texts_per_s'] / best['texts_per_s']:.2f}" if ours else ("best peer" if r is best else ""),
            f"{b1['p50_ms']:.2f}" if b1 else "–",
            f"{r['accuracy']:.4f}" if r.get("accuracy") is not None else "–",
            f"{same:.2%}",
        ]
        rows.append("| " + " | ".join(cells) + " |")
    return rows


def headline_table(run_dirs: list[str | Path]) -> str:
    """The headline Markdown table of the whole-file runs in ``run_dirs``."""
    rows = [HEADER]
    for run_dir in run_dirs:
        rows.extend(_rows(_read(run_dir)))
    return "\n".join(rows)


def update_readme(readme: str | Path, run_dirs: list[str | Path]) -> None:
    """Replace the headline block of ``readme`` with :func:`headline_table` of ``run_dirs`` (atomically)."""
    body = Path(readme).read_text(encoding="utf-8")
    if START not in body or END not in body:
        raise UserError(f"{readme} has no {START} ... {END} block")
    head, rest = body.split(START, 1)
    text = head + START + "\n" + headline_table(run_dirs) + "\n" + END + rest.split(END, 1)[1]
    with atomic_file(readme) as tmp:
        tmp.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    update_readme(sys.argv[1], sys.argv[2:])
