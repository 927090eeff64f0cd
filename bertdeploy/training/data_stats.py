"""``bertdeploy data stats``: rows and label counts per split, token-length percentiles, the max_length that
covers 95 % / 99 % of rows, padding waste (static at that length versus dynamic), and a length histogram."""

from __future__ import annotations

import random
from collections import Counter
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
    task: str = "text-classification"
    """The task the data was read as (:mod:`bertdeploy.tasks`)."""
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
    task: str | None = None,
) -> DataStats:
    """Compute :class:`DataStats` for a dataset of any task (``task``: None reads it from the layout) with
    ``model``'s tokenizer; write the histogram to ``plot``."""
    from bertdeploy.training.models import load_tokenizer, resolve
    from bertdeploy.training.vocab import sample, texts_of, unk_rate

    spec = DataSpec(data, text_column, label_column, val_ratio=0.1, unseen_labels="keep", task=task)
    loaded = load_data(spec)
    ms = resolve(model)
    tok = load_tokenizer(None if ms.kind != "preset" else "minilm-l6", ms)
    split = "train" if "train" in loaded.splits else next(iter(loaded.splits))
    lengths = encoded_lengths(loaded.splits[split], tok)
    pct = {f"p{p}": int(np.percentile(lengths, p)) for p in PERCENTILES}
    unk = unk_rate(tok, sample(texts_of(loaded.splits[split])))
    cover = {"p95": int(np.ceil(np.percentile(lengths, 95))), "p99": int(np.ceil(np.percentile(lengths, 99)))}
    waste = {f"static_{k}_{v}": padding_waste(lengths, v, batch_size) for k, v in {**cover, "fixed": 128}.items()}
    waste[f"dynamic_batch{batch_size}"] = padding_waste(lengths, None, batch_size)
    stats = DataStats(
        source=loaded.source,
        labels=loaded.labels,
        rows={k: loaded.rows(k) for k in loaded.splits},
        label_counts={name: label_counts(s, loaded.labels) for name, s in loaded.splits.items()},
        length_percentiles=pct,
        mean_length=float(np.mean(lengths)),
        cover=cover,
        padding_waste=waste,
        task=loaded.task,
        unk_rate=round(unk, 5),
        notes=[f"token lengths of the {split} split with the {model} tokenizer (incl. special tokens)", *loaded.notes],
    )
    if plot:
        stats.plot = str(_histogram(lengths, cover, Path(plot), Path(data).name))
    return stats


def encoded_lengths(split: dict[str, list[Any]], tok: Any) -> list[int]:
    """Tokens per row with special tokens, untruncated, for any task's split: a text; a sentence's words (token
    classification); a question with its context (QA); a question with its longest choice (multiple choice)."""
    if "text" in split:
        ids = tok(split["text"], add_special_tokens=True, truncation=False, verbose=False)["input_ids"]
    elif "tokens" in split:
        ids = tok(split["tokens"], is_split_into_words=True, truncation=False, verbose=False)["input_ids"]
    elif "context" in split:
        ids = tok(split["question"], split["context"], truncation=False, verbose=False)["input_ids"]
    else:
        pairs = [(q, c) for q, choices in zip(split["question"], split["choices"]) for c in choices]
        each = [
            len(x)
            for x in tok([q for q, _ in pairs], [c for _, c in pairs], truncation=False, verbose=False)["input_ids"]
        ]
        width = len(split["choices"][0]) if split["choices"] else 1
        return [max(each[i : i + width]) for i in range(0, len(each), width)]
    return [len(x) for x in ids]


def label_counts(split: dict[str, list[Any]], labels: list[str]) -> dict[str, int]:
    """Rows per label (text classification), tokens per tag (token classification); {} for QA / multiple choice."""
    if "tags" in split:
        flat = [t for tags in split["tags"] for t in tags]
    elif "label" in split and labels:
        flat = split["label"]
    else:
        return {}
    counts = Counter(flat)
    return {name: counts[i] for i, name in enumerate(labels)}


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
