"""``bertdeploy data stats``: rows and label counts per split, token-length percentiles, the max_length that
covers 95 % / 99 % of rows, padding waste (static at that length versus dynamic), and a length histogram."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bertdeploy.data import DataSpec, load_data

PERCENTILES = (50, 90, 95, 99, 100)


@dataclass
class DataStats:
    source: str
    labels: list[str]
    rows: dict[str, int]
    label_counts: dict[str, dict[str, int]]
    length_percentiles: dict[str, int]
    mean_length: float
    cover: dict[str, int]
    """max_length covering 95 % / 99 % of training rows (``p95`` / ``p99``)."""
    padding_waste: dict[str, float]
    """Share of padded positions that are padding: static to p95/p99/128 length versus dynamic batches."""
    unk_rate: float = 0.0
    """Share of the training tokens (no special tokens) that are the tokenizer's ``[UNK]``: ``train`` refuses
    above ``--max-unk-rate`` (0.05)."""
    plot: str | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        import dataclasses

        return dataclasses.asdict(self)


def padding_waste(lengths: list[int], pad_to: int | None, batch_size: int = 32, seed: int = 0) -> float:
    """Share of the tokens fed to the model that are padding; ``pad_to=None`` is dynamic (each shuffled batch
    padded to its longest row)."""
    lens = np.asarray(lengths)
    if pad_to is not None:
        real = np.minimum(lens, pad_to).sum()
        return float(1 - real / (len(lens) * pad_to))
    order = list(range(len(lens)))
    random.Random(seed).shuffle(order)
    shuffled = lens[order]
    fed = sum(
        int(shuffled[i : i + batch_size].max()) * len(shuffled[i : i + batch_size])
        for i in range(0, len(lens), batch_size)
    )
    return float(1 - shuffled.sum() / fed)


def data_stats(
    data: str,
    model: str = "minilm-l6",
    text_column: str = "text",
    label_column: str = "label",
    plot: str | Path | None = None,
    batch_size: int = 32,
) -> DataStats:
    """Compute :class:`DataStats` for a dataset with ``model``'s tokenizer; write the histogram to ``plot``."""
    from bertdeploy.training.models import load_tokenizer, resolve
    from bertdeploy.training.vocab import sample, unk_rate

    loaded = load_data(DataSpec(data, text_column, label_column, val_ratio=0.1, unseen_labels="keep"))
    ms = resolve(model)
    tok = load_tokenizer(None if ms.kind != "preset" else "minilm-l6", ms)
    split = "train" if "train" in loaded.splits else next(iter(loaded.splits))
    texts = loaded.splits[split]["text"]
    lengths = [len(ids) for ids in tok(texts, add_special_tokens=True, truncation=False)["input_ids"]]
    pct = {f"p{p}": int(np.percentile(lengths, p)) for p in PERCENTILES}
    unk = unk_rate(tok, sample(texts))
    cover = {"p95": int(np.ceil(np.percentile(lengths, 95))), "p99": int(np.ceil(np.percentile(lengths, 99)))}
    waste = {f"static_{k}_{v}": padding_waste(lengths, v, batch_size) for k, v in {**cover, "fixed": 128}.items()}
    waste[f"dynamic_batch{batch_size}"] = padding_waste(lengths, None, batch_size)
    counts = {
        name: {loaded.labels[i]: s["label"].count(i) for i in range(len(loaded.labels))}
        for name, s in loaded.splits.items()
    }
    stats = DataStats(
        source=loaded.source,
        labels=loaded.labels,
        rows={k: len(v["label"]) for k, v in loaded.splits.items()},
        label_counts=counts,
        length_percentiles=pct,
        mean_length=float(np.mean(lengths)),
        cover=cover,
        padding_waste=waste,
        unk_rate=round(unk, 5),
        notes=[f"token lengths of the {split} split with the {model} tokenizer (incl. [CLS]/[SEP])", *loaded.notes],
    )
    if plot:
        stats.plot = str(_histogram(lengths, cover, Path(plot), Path(data).name))
    return stats


def _histogram(lengths: list[int], cover: dict[str, int], path: Path, title: str) -> Path:
    from matplotlib.figure import Figure

    from bertdeploy.bundle import atomic_file

    fig = Figure(figsize=(7, 4))
    ax = fig.subplots()
    ax.hist(lengths, bins=min(60, max(10, max(lengths) // 2)), color="#4c72b0")
    for name, value in cover.items():
        ax.axvline(value, color="#c44e52" if name == "p99" else "#dd8452", ls="--", label=f"{name} = {value} tokens")
    ax.set_xlabel("tokens per text (with special tokens)")
    ax.set_ylabel("texts")
    ax.set_title(f"{title}: token lengths")
    ax.legend()
    fig.tight_layout()
    with atomic_file(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    return path
