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
