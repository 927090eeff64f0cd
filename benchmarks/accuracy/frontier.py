"""The distillation frontier: accuracy vs end-to-end texts/s of the teacher and its students (every accepted
variant), from a ``bertdeploy bench`` results folder. matplotlib's object API (no pyplot).

    python benchmarks/accuracy/frontier.py benchmarks/accuracy/bench -o benchmarks/accuracy/frontier.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from bertdeploy.benchmark.compare import load_results
from bertdeploy.benchmark.pick import pareto_front


def points(rows: list[dict]) -> tuple[int, list[dict]]:
    """Per target x variant of our runtime at the largest batch size: the best texts/s over the paddings."""
    ok = [r for r in rows if r["status"] == "ok" and r["backend"] == "bertdeploy" and r.get("accuracy") is not None]
    batch = max(r["batch_size"] for r in ok)
    best: dict[tuple[str, str], dict] = {}
    for r in ok:
        key = (r["target"], r["variant"])
        if r["batch_size"] == batch and (key not in best or r["e2e_seq_per_s"] > best[key]["e2e_seq_per_s"]):
            best[key] = r
    return batch, sorted(best.values(), key=lambda r: r["e2e_seq_per_s"])


def plot(rows: list[dict], path: Path, title: str) -> Path:
    batch, pts = points(rows)
    targets = sorted({r["target"] for r in pts})
    cmap = colormaps["tab10"]
    fig = Figure(figsize=(8, 5.5))
    ax = fig.subplots()
    for r in pts:
        ax.scatter(r["e2e_seq_per_s"], r["accuracy"] * 100, s=50, color=cmap(targets.index(r["target"]) % 10))
        ax.annotate(r["variant"], (r["e2e_seq_per_s"], r["accuracy"] * 100), fontsize=7, xytext=(4, 3),
                    textcoords="offset points")  # fmt: skip
    front = pareto_front([(1.0 / r["e2e_seq_per_s"], r["accuracy"]) for r in pts])
    ax.plot([pts[i]["e2e_seq_per_s"] for i in front], [pts[i]["accuracy"] * 100 for i in front], "k--", lw=1)
    for i, t in enumerate(targets):
        ax.scatter([], [], color=cmap(i % 10), label=t)
    ax.set_xscale("log")
    plain = FuncFormatter(lambda v, _pos: f"{v:,.0f}")  # 200, 500, 1,000: not 2x10^2
    ax.xaxis.set_major_formatter(plain)
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _pos: f"{v:,.0f}" if f"{v:.0f}"[0] in "235" else ""))
    ax.set_xlabel(f"end-to-end texts/s (tokenization included, batch {batch}, best padding, log)")
    ax.set_ylabel("accuracy, %")
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("results", help="a bertdeploy bench output folder (or its results.json)")
    p.add_argument("-o", "--output", type=Path, required=True)
    p.add_argument("--title", default="distillation frontier: teacher and students")
    a = p.parse_args()
    report, _ = load_results(a.results)
    print(plot(report.rows(), a.output, a.title))


if __name__ == "__main__":
    main()
