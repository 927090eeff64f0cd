"""The evaluation records and gold answers of the tasks beyond text classification, as every backend of the bench
receives them (JSON-able: they cross into worker processes):

* token classification: the test sentences joined with single spaces (raw text, as production sends it); gold = the
  entities of their word tags as character spans of that text (:func:`bertdeploy.metrics.gold_spans`);
* question answering: ``[question, context]`` pairs; gold = the reference answer texts;
* multiple choice: ``{"question", "choices"}`` records; gold = the right choice's index.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bertdeploy.errors import UserError

TOKENS, QA, CHOICE = "token-classification", "question-answering", "multiple-choice"


def check_data_task(path: str, task: str, target: str) -> None:
    """One line when ``path`` is data of another task than the model ``target``'s (token files for a text
    classifier, a table for a tagger ...)."""
    from bertdeploy.data import detect_tasks, found_other

    if task != "text-classification" and not Path(path).expanduser().exists():
        raise UserError(f"data path not found: {path}")
    found = detect_tasks(path)
    if task in found or (task == "text-classification" and not found_other(path)):
        return
    raise UserError(f"{path} holds {' / '.join(found)} data, but {target} is a {task} model; give --data of its task")


def task_records(
    task: str, path: str, labels: list[str], text_column: str, label_column: str
) -> tuple[list[Any], list[Any], str]:
    """(records, gold, split name) of the evaluation split (test, else validation) of ``path`` for ``task``."""
    from bertdeploy.data import DataSpec, load_data

    spec = DataSpec(path=path, text_column=text_column, label_column=label_column, task=task)
    data = load_data(spec, labels=labels if task == TOKENS else None)
    name = data.eval_split if data.eval_split in data.splits else next(iter(data.splits))
    split = data.splits[name]
    if task == TOKENS:
        return _token_records(split["tokens"], split["tags"], data.labels) + (name,)
    if task == QA:
        records = [[q, c] for q, c in zip(split["question"], split["context"])]
        return records, [list(a["text"]) for a in split["answers"]], name
    if task == CHOICE:
        records = [{"question": q, "choices": list(cs)} for q, cs in zip(split["question"], split["choices"])]
        return records, list(split["label"]), name
    raise UserError(f"no evaluation records for task {task!r}")


def _token_records(words: list[list[str]], tags: list[list[int]], labels: list[str]) -> tuple[list[str], list[Any]]:
    from bertdeploy.metrics import gold_spans

    texts = [" ".join(w) for w in words]
    gold = [[list(s) for s in gold_spans(w, [labels[t] for t in ts])] for w, ts in zip(words, tags)]
    return texts, gold


def sequence_lengths(task: str, tokenizer: Path, max_length: int, records: list[Any]) -> list[list[int]]:
    """Per record, the true lengths of the sequences the runtime runs for it: its windows (token classification,
    question answering) or one sequence per choice (multiple choice), tokenized by the task's runtime head."""
    import numpy as np

    from bertdeploy.runtime.heads import head_for

    head = head_for(task)
    encoder = head.make_encoder(tokenizer, max_length)
    if task == CHOICE:
        width = len(records[0]["choices"]) if records else 0
        pairs = [(r["question"], c) for r in records for c in r["choices"]]
        lengths = encoder.encode_pairs(pairs).lengths
        return [lengths[i * width : (i + 1) * width].tolist() for i in range(len(records))]
    encoded = encoder.encode_pairs([tuple(r) for r in records]) if task == QA else encoder.encode(records)
    bounds = np.searchsorted(encoded.text_of_row, np.arange(len(records) + 1))
    return [encoded.lengths[a:b].tolist() for a, b in zip(bounds[:-1], bounds[1:])]
