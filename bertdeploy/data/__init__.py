"""Datasets: load (folder | file | Hub id) → label map → validation carve-out → subset, for each task's layout.

* text classification (:mod:`bertdeploy.data.tables`): csv / tsv / jsonl / json / parquet tables with a text and a
  label column, or a Hugging Face dataset id;
* token classification (:mod:`bertdeploy.data.tokens`): token JSONL or CoNLL files;
* question answering and multiple choice (:mod:`bertdeploy.data.qa`): SQuAD JSON, flattened JSONL,
  multiple-choice JSONL, and the paragraph-id layout (``context.json``), which serves both.

A *folder* holds ``train`` / ``validation`` (or ``val`` / ``dev``) / ``test`` files and optionally ``labels.txt``
(one label / tag name per line, in id order); a *single file* is split by ratios (seeded). The task is read from
the layout unless given (:func:`resolve_task`). Every problem with the input is a :class:`UserError` with one
clear line.
"""

from __future__ import annotations

from pathlib import Path

from bertdeploy import tasks
from bertdeploy.data.common import SPLIT_NAMES, DataSpec, LoadedData, read_labels_txt
from bertdeploy.data.qa import detect as _detect_qa
from bertdeploy.data.qa import load_qa_data
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
    "detect_tasks",
    "load_data",
    "load_eval_split",
    "read_labels_txt",
    "read_table",
    "resolve_task",
    "stratified_split",
    "subset",
]


def detect_tasks(path: str) -> list[str]:
    """The tasks a data path can serve by its layout, first the one it means when nothing else is said: SQuAD /
    QA JSONL → question answering, multiple-choice JSONL → multiple choice, the paragraph-id layout → both, token
    files (token JSONL, CoNLL) → token classification, everything else (tables, Hub ids) text classification."""
    return _detect_qa(path) or [_detect_tokens(path) or tasks.DEFAULT]


def detect_task(path: str) -> str:
    """The first of :func:`detect_tasks`."""
    return detect_tasks(path)[0]


def resolve_task(spec: DataSpec) -> str:
    """``spec.task`` checked against the table and the layout, or the layout's task when it is None. A task the
    local layout does not hold (token files for text classification and the reverse), or no task for a layout that
    serves two, is a :class:`UserError`."""
    found = detect_tasks(spec.path)
    if spec.task is None:
        if len(found) > 1:
            raise UserError(f"{spec.path} serves {' and '.join(found)}: pass --task {' or --task '.join(found)}")
        return found[0]
    task = tasks.get(spec.task).name
    if task not in found and Path(spec.path).expanduser().exists() and not _has_files_for(spec.path, task):
        raise UserError(f"{spec.path} holds {found[0]} data, but the task is {task}; pass --task {found[0]}")
    return task


def _has_files_for(path: str, task: str) -> bool:
    """True when ``path`` has split files with the extensions ``task``'s reader takes (its reader then names what is
    wrong in them; a layout that only looked like text classification is not refused outright)."""
    from bertdeploy.data import qa, tokens
    from bertdeploy.data.common import find_split_files

    extensions = {"token-classification": tokens.EXTENSIONS, "question-answering": qa.EXTENSIONS,
                  "multiple-choice": qa.EXTENSIONS}.get(task)  # fmt: skip
    if extensions is None or found_other(path):
        return False
    p = Path(path).expanduser()
    return p.suffix.lower() in extensions if p.is_file() else bool(find_split_files(p, extensions))


def found_other(path: str) -> bool:
    """True when the layout of ``path`` was recognised as a task of its own (not the text-classification default)."""
    return _detect_qa(path) != [] or _detect_tokens(path) is not None


def load_data(spec: DataSpec, labels: list[str] | None = None) -> LoadedData:
    """Load, label-map, validate and split a dataset of the spec's task. ``labels`` (e.g. a trained model's) fixes
    the label (tag) order of the classification tasks."""
    task = resolve_task(spec)
    if task == "token-classification":
        return load_token_data(spec, labels)
    if task in ("question-answering", "multiple-choice"):
        return load_qa_data(spec, task)
    return load_table_data(spec, labels)


def check_trainable(data: LoadedData, unseen_labels: str = "error") -> LoadedData:
    """Errors that make training meaningless: no train split, a single class (token classification: no entity tag
    at all); and validation / test labels that never appear in training, handled by ``unseen_labels``: ``error``
    (refuse), ``keep`` (the rows stay and count as errors), ``drop`` (the rows are removed from ``data`` and counted
    in its notes). Tags are checked when token data is loaded."""
    if "train" not in data.splits:
        raise UserError(f"{data.source}: no training split")
    if data.task in ("question-answering", "multiple-choice"):
        return data  # answers and choice indices were checked as the records were read
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
