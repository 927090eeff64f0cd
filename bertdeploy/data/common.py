"""What both data layouts share: where the data is (:class:`DataSpec`), what loading gives
(:class:`LoadedData`), the split file names and ``labels.txt``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bertdeploy.errors import UserError

SPLIT_NAMES = {"train": ("train",), "validation": ("validation", "valid", "val", "dev"), "test": ("test",)}


@dataclass
class DataSpec:
    """Where the data is and how to read it."""

    path: str
    """Folder, file, or Hugging Face dataset id."""
    text_column: str = "text"
    label_column: str = "label"
    val_ratio: float = 0.1
    """Share of train carved out (stratified) as validation when there is no validation split."""
    test_ratio: float = 0.0
    """For a single file: share held out as test."""
    train_size: int | None = None
    """Stratified, seeded subset of the training split."""
    seed: int = 42
    unseen_labels: str = "error"
    """Validation / test labels absent from training: ``error``, ``keep`` (label space from labels.txt, else from
    every split) or ``drop`` (the rows are removed and counted); see :func:`check_trainable`."""
    task: str | None = None
    """``text-classification`` | ``token-classification`` (:mod:`bertdeploy.tasks`); None: from the layout
    (:func:`detect_task`)."""


@dataclass
class LoadedData:
    """Splits as ``{"train"|"validation"|"test": {"text": [...], "label": [ids]}}`` plus the label names (token
    classification: ``{"tokens": [[...]], "tags": [[ids]]}`` and the tag names, :mod:`bertdeploy.data_tokens`)."""

    splits: dict[str, dict[str, list[Any]]]
    labels: list[str]
    source: str
    notes: list[str] = field(default_factory=list)
    task: str = "text-classification"

    def rows(self, split: str) -> int:
        """How many rows (sentences, for token classification) ``split`` holds."""
        part = self.splits[split]
        return len(next(iter(part.values()))) if part else 0

    @property
    def eval_split(self) -> str:
        """The split final scores are reported on: test when present, else validation."""
        return "test" if "test" in self.splits else "validation"

    def to_datasets(self):  # -> datasets.DatasetDict
        from datasets import Dataset, DatasetDict

        return DatasetDict({k: Dataset.from_dict(v) for k, v in self.splits.items()})


# ---------------------------------------------------------------- reading files


def read_labels_txt(path: Path) -> list[str]:
    try:
        names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except UnicodeDecodeError:
        raise UserError(f"{path} is not valid UTF-8") from None
    if len(set(names)) != len(names):
        raise UserError(f"{path} lists a label twice")
    return names


# ---------------------------------------------------------------- label mapping and checks


def find_split_files(folder: Path, extensions: tuple[str, ...]) -> dict[str, Path]:
    """``{split: file}``: the first ``<split name><extension>`` file of each split in ``folder``."""
    found: dict[str, Path] = {}
    for split, names in SPLIT_NAMES.items():
        for name in names:
            hits = [folder / f"{name}{ext}" for ext in extensions if (folder / f"{name}{ext}").is_file()]
            if hits:
                found[split] = hits[0]
                break
    return found


def split_off(split: dict[str, list[Any]], ratio: float, seed: int) -> tuple[dict[str, list[Any]], dict]:
    """(kept, held out): ``ratio`` of the rows of a ``{column: values}`` split held out at random (seeded)."""
    import random

    n = len(next(iter(split.values())))
    order = list(range(n))
    random.Random(seed).shuffle(order)
    held = sorted(order[: max(1, round(n * ratio))])
    kept = sorted(set(range(n)) - set(held))
    return {k: [v[i] for i in kept] for k, v in split.items()}, {k: [v[i] for i in held] for k, v in split.items()}


def carve(splits: dict[str, dict[str, list[Any]]], spec: DataSpec, unit: str) -> list[str]:
    """Random (seeded) carve-outs for layouts without stratification: a test split out of a single file
    (``test_ratio``), a validation split out of train when there is none, and the ``train_size`` subset. Changes
    ``splits`` in place; returns the notes (``unit``: what a row is, e.g. "questions")."""
    notes = []
    if "train" in splits and len(splits) == 1 and spec.test_ratio > 0:
        splits["train"], splits["test"] = split_off(splits["train"], spec.test_ratio, spec.seed)
        notes.append(f"test split carved out of the file: {_rows(splits['test'])} {unit} (seeded)")
    if "train" in splits and "validation" not in splits:
        splits["train"], splits["validation"] = split_off(splits["train"], spec.val_ratio, spec.seed)
        notes.append(f"validation carved out of train: {_rows(splits['validation'])} {unit} (seeded)")
    if spec.train_size and "train" in splits:
        before = _rows(splits["train"])
        if spec.train_size < before:
            splits["train"], _ = split_off(splits["train"], 1 - spec.train_size / before, spec.seed)
        notes.append(f"train subset: {_rows(splits['train'])} of {before} {unit} (seed {spec.seed})")
    return notes


def _rows(split: dict[str, list[Any]]) -> int:
    return len(next(iter(split.values())))
