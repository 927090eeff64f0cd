"""Datasets: load (folder | file | Hub id) → label map → validation carve-out → subset, for each task's layout.

* text classification (:mod:`bertdeploy.data.tables`): csv / tsv / jsonl / json / parquet tables with a text and a
  label column, or a Hugging Face dataset id;
* token classification (:mod:`bertdeploy.data.tokens`): token JSONL or CoNLL files.

A *folder* holds ``train`` / ``validation`` (or ``val`` / ``dev``) / ``test`` files and optionally ``labels.txt``
(one label / tag name per line, in id order); a *single file* is split by ratios (seeded). The task is read from
the layout unless given (:func:`resolve_task`). Every problem with the input is a :class:`UserError` with one
clear line.
"""

from __future__ import annotations

from pathlib import Path

from bertdeploy import tasks
from bertdeploy.data.common import SPLIT_NAMES, DataSpec, LoadedData, read_labels_txt
from bertdeploy.data.tables import EXTENSIONS, load_table_data, read_table, stratified_split, subset, take
from bertdeploy.data.tokens import detect_task as _detect_tokens
from bertdeploy.data.tokens import load_token_data
from bertdeploy.errors import UserError

__all__ = [
    "EXTENSIONS",
    "SPLIT_NAMES",
    "DataSpec",
    "LoadedData",
    "check_trainable",
    "detect_task",
    "load_data",
    "load_eval_split",
    "read_labels_txt",
    "read_table",
    "resolve_task",
    "stratified_split",
    "subset",
]


def detect_task(path: str) -> str:
    """The task a data path holds by its layout: token files (token JSONL, CoNLL) are token classification,
    everything else (tables, Hub ids) text classification."""
    return _detect_tokens(path) or tasks.DEFAULT


def resolve_task(spec: DataSpec) -> str:
    """``spec.task`` checked against the table, or the layout's task when it is None; a task that contradicts a
    local layout (token files for text classification and the reverse) is a :class:`UserError`."""
    found = detect_task(spec.path)
    if spec.task is None:
        return found
    task = tasks.get(spec.task).name
    if task != found and Path(spec.path).expanduser().exists():
        raise UserError(f"{spec.path} holds {found} data, but the task is {task}; pass --task {found}")
    return task


def load_data(spec: DataSpec, labels: list[str] | None = None) -> LoadedData:
    """Load, label-map, validate and split a dataset of the spec's task. ``labels`` (e.g. a trained model's) fixes
    the label (tag) order."""
    if resolve_task(spec) == "token-classification":
        return load_token_data(spec, labels)
    return load_table_data(spec, labels)


def check_trainable(data: LoadedData, unseen_labels: str = "error") -> LoadedData:
    """Errors that make training meaningless: no train split, a single class (token classification: no entity tag
    at all); and validation / test labels that never appear in training, handled by ``unseen_labels``: ``error``
    (refuse), ``keep`` (the rows stay and count as errors), ``drop`` (the rows are removed from ``data`` and counted
    in its notes). Tags are checked when token data is loaded."""
    if "train" not in data.splits:
        raise UserError(f"{data.source}: no training split")
    if data.task == "token-classification":
        seen = {t for tags in data.splits["train"]["tags"] for t in tags}
        if not any(data.labels[t] != "O" for t in seen):
            raise UserError(f"{data.source}: the training set has no entity tag (every token is 'O')")
        return data
    seen = set(data.splits["train"]["label"])
    if len(seen) < 2:
        raise UserError(f"{data.source}: the training set has a single class ({data.labels[next(iter(seen))]!r})")
    for name in ("validation", "test"):
        if name in data.splits:
            _check_unseen(data, name, seen, unseen_labels)
    return data


def _check_unseen(data: LoadedData, name: str, seen: set[int], unseen_labels: str) -> None:
    split = data.splits[name]
    unseen = sorted(set(split["label"]) - seen)
    if not unseen:
        return
    names = [data.labels[i] for i in unseen]
    rows = [i for i, y in enumerate(split["label"]) if y not in seen]
    if unseen_labels == "error":
        raise UserError(
            f"{data.source}: {name} label(s) {names} never appear in training ({len(rows)} rows); pass "
            "--unseen-labels keep (the rows count as errors) or drop (the rows are removed)"
        )
    if unseen_labels == "drop":
        if len(rows) == len(split["label"]):
            raise UserError(f"{data.source}: every {name} row has a label that never appears in training")
        data.splits[name] = take(split, [i for i, y in enumerate(split["label"]) if y in seen])
        data.notes.append(f"{name}: dropped {len(rows)} row(s) with label(s) {names} never seen in training")
    else:
        data.notes.append(f"{name}: kept {len(rows)} row(s) with label(s) {names} never seen in training")


def load_eval_split(
    path: str, labels: list[str], text_column: str = "text", label_column: str = "label"
) -> tuple[list[str], list[int], str]:
    """The evaluation split (test, else validation) of ``path`` mapped onto ``labels`` (a model's label order)."""
    data = load_data(DataSpec(path=path, text_column=text_column, label_column=label_column), labels=labels)
    name = data.eval_split if data.eval_split in data.splits else next(iter(data.splits))
    split = data.splits[name]
    return split["text"], split["label"], name
