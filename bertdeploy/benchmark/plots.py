"""PNG plots with matplotlib's object API (``Figure``: no pyplot, no backend switch): the metric-vs-latency Pareto
frontier (the task's primary metric: accuracy, entity F1, F1 ...) and throughput by variant x padding x batch size."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bertdeploy.benchmark.pick import pareto_front

PAD_COLORS = {"static": "#9e9e9e", "dynamic": "#1f77b4", "bucketed": "#2ca02c"}
BACKEND_MARKERS = {"bertdeploy": "o", "torch": "s", "pipeline": "^", "ortmodel": "D", "openvino": "P"}
#: what each backend is, as the legend names it
ENGINE_NAMES = {
    "bertdeploy": "bertdeploy runtime (ONNX Runtime)",
    "torch": "PyTorch eager",
    "pipeline": "transformers pipeline",
    "ortmodel": "Optimum ORTModel",
    "openvino": "OpenVINO",
}
#: tick positions on the log latency axis (1-2-5 per decade), labelled as plain milliseconds
TICK_STEPS = (1.0, 2.0, 5.0)


def _figure(width: float, height: float, rows: int, cols: int):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    return fig, fig.subplots(rows, cols, squeeze=False)


def block_label(r: dict[str, Any]) -> str:
    return r["variant"] if r["backend"] == "bertdeploy" else f"{r['backend']}-{r['variant']}"


def ms_label(value: float, _pos: Any = None) -> str:
    """A latency tick as plain milliseconds: 0.5, 2, 10, 200 (no powers of ten)."""
    if value >= 1:
        return f"{value:.0f}"
    return f"{value:.2g}"


def plain_ms_axis(ax: Any) -> None:
    """Log x axis with 1-2-5 major ticks labelled in plain ms and unlabelled minor ticks (no overlapping text)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=TICK_STEPS))
    ax.xaxis.set_major_formatter(FuncFormatter(ms_label))
    ax.xaxis.set_minor_formatter(NullFormatter())


def pareto_plot(
    rows: list[dict[str, Any]], path: Path, metric: str = "accuracy", label: str = "accuracy"
) -> Path | None:
    """``metric`` (a row key, titled ``label``) vs p50 end-to-end latency: left at the smallest batch size (latency),
    right per sequence at the largest (throughput); the frontier is drawn over all targets."""
    ok = [r for r in rows if r["status"] == "ok" and r.get(metric) is not None and r.get("e2e_p50_ms")]
    if not ok:
        return None
    from matplotlib import colormaps

    sizes = sorted({r["batch_size"] for r in ok})
    panels = [(sizes[0], False)] + ([(sizes[-1], True)] if len(sizes) > 1 else [])
    fig, axes = _figure(7 * len(panels), 5.5, 1, len(panels))
    targets = sorted({r["target"] for r in ok})
    cmap = colormaps["tab10"]
    for ax, (bs, per_seq) in zip(axes[0], panels, strict=True):
        sel = [r for r in ok if r["batch_size"] == bs]
        xs = [r["e2e_p50_ms"] / (bs if per_seq else 1) for r in sel]
        ys = [r[metric] * 100 for r in sel]
        for r, x, y in zip(sel, xs, ys, strict=True):
            ax.scatter(
                x,
                y,
                marker=BACKEND_MARKERS.get(r["backend"], "o"),
                s=46,
                alpha=0.8,
                color=cmap(targets.index(r["target"]) % 10),
                edgecolors=PAD_COLORS.get(r["padding"], "k"),
                linewidths=1.5,
            )
        front = pareto_front(list(zip(xs, ys, strict=True)))
        ax.plot([xs[i] for i in front], [ys[i] for i in front], "k--", lw=1, zorder=0)
        for i in front:
            r = sel[i]
            ax.annotate(
                f"{block_label(r)}/{r['padding'][:3]}",
                (xs[i], ys[i]),
                fontsize=7,
                xytext=(4, 3),
                textcoords="offset points",
            )
        plain_ms_axis(ax)
        ax.set_xlabel(f"p50 latency, ms {'per sequence' if per_seq else 'per batch'} (batch {bs}, log scale)")
        ax.set_ylabel(f"{label}, %")
        ax.set_title(f"{label} vs latency, batch {bs}")
        ax.grid(alpha=0.3, which="both")
    _pareto_legend(axes[0][-1], ok, targets, cmap)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


def _pareto_legend(ax: Any, ok: list[dict[str, Any]], targets: list[str], cmap: Any) -> None:
    """Models by colour, engines by marker, paddings by edge colour; outside the panel, so it hides no point."""
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], ls="", marker="o", color=cmap(i % 10), label=t) for i, t in enumerate(targets)]
    used = {r["backend"] for r in ok}
    handles += [
        Line2D([], [], ls="", marker=m, color="k", mfc="none", label=ENGINE_NAMES.get(b, b))
        for b, m in BACKEND_MARKERS.items()
        if b in used
    ]
    pads = {r["padding"] for r in ok}
    handles += [
        Line2D([], [], ls="", marker="o", mfc="w", mec=c, mew=2, label=p) for p, c in PAD_COLORS.items() if p in pads
    ]
    ax.legend(
        handles=handles,
        fontsize=7,
        loc="upper left",
        bbox_to_anchor=(1.02, 1.0),
        title="model · engine · padding",
        title_fontsize=7,
    )


def throughput_plot(rows: list[dict[str, Any]], path: Path, unit: str = "sequences") -> Path | None:
    """``unit``/s end to end (sequences; questions for QA / multiple choice): one panel per target x batch size, bars
    per block, one colour per padding."""
    ok = [r for r in rows if r["status"] == "ok" and r.get("e2e_seq_per_s")]
    if not ok:
        return None
    targets = list(dict.fromkeys(r["target"] for r in ok))
    sizes = sorted({r["batch_size"] for r in ok})
    paddings = [p for p in PAD_COLORS if any(r["padding"] == p for r in ok)]
    fig, axes = _figure(4.5 * len(sizes) + 1, 3.2 * len(targets) + 0.6, len(targets), len(sizes))
    for ti, target in enumerate(targets):
        blocks = list(dict.fromkeys(block_label(r) for r in ok if r["target"] == target))
        for si, bs in enumerate(sizes):
            ax = axes[ti][si]
            width = 0.8 / max(len(paddings), 1)
            for pi, pad in enumerate(paddings):
                vals = []
                for b in blocks:
                    hit = [
                        r
                        for r in ok
                        if r["target"] == target
                        and r["batch_size"] == bs
                        and r["padding"] == pad
                        and block_label(r) == b
                    ]
                    vals.append(hit[0]["e2e_seq_per_s"] if hit else 0.0)
                xs = [i + (pi - (len(paddings) - 1) / 2) * width for i in range(len(blocks))]
                ax.bar(xs, vals, width=width, color=PAD_COLORS[pad], label=pad)
            ax.set_xticks(range(len(blocks)))
            ax.set_xticklabels(blocks, rotation=35, ha="right", fontsize=7)
            ax.set_title(f"{target} — batch {bs}", fontsize=9)
            ax.set_ylabel(f"{unit}/s" if si == 0 else "")
            ax.grid(axis="y", alpha=0.3)
    axes[0][-1].legend(fontsize=7, title="padding", title_fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path
