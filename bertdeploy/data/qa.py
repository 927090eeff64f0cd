"""Extractive question answering and multiple choice: SQuAD JSON, flattened JSONL, multiple-choice JSONL and the
paragraph-id layout → checked records → splits.

Layouts (a folder of ``train`` / ``validation`` / ``test`` files, or one file):

* **SQuAD v1.1 JSON** (``.json``): ``{"data": [{"paragraphs": [{"context", "qas": [{"id", "question",
  "answers": [{"text", "answer_start"}]}]}]}]}`` → question answering;
* **flattened JSONL** (Hugging Face's ``squad`` rows): ``{"id", "question", "context", "answers": {"text": [...],
  "answer_start": [...]}}`` → question answering;
* **multiple-choice JSONL**: ``{"id", "question", "choices": [...], "label": int}`` → multiple choice;
* **paragraph-id layout** (a folder with ``context.json``, a list of paragraphs, and per split a JSON list of
  ``{"id", "question", "paragraphs": [indices], "relevant": index, "answer": {"text", "start"}}``): both tasks —
  multiple choice (the paragraphs are the choices, ``relevant`` the answer) or question answering (the relevant
  paragraph is the context); ``--task`` says which.

Every answer offset is checked (``context[start:start + len(text)] == text``); a wrong one, a missing field, an
empty context or question, a choice count that differs from the first record's is one :class:`UserError` naming
the file and the question id. QA splits are ``{"id", "question", "context", "answers": [{"text": [...],
"answer_start": [...]}]}``; multiple-choice splits ``{"id", "question", "choices": [[...]], "label": [int]}``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bertdeploy.data.common import DataSpec, LoadedData, carve, find_split_files
from bertdeploy.errors import UserError

QA, MC = "question-answering", "multiple-choice"
EXTENSIONS = (".json", ".jsonl")
CONTEXTS = "context.json"


# ---------------------------------------------------------------- detection


def _first_record(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            if path.suffix.lower() == ".jsonl":
                return next((json.loads(line) for line in f if line.strip()), None)
            head = f.read(4096).lstrip()
    except (OSError, ValueError, RecursionError):
        return None
    if head.startswith("{") and '"data"' in head:
        return {"data": []}
    if head.startswith("["):
        return {"paragraphs": []} if '"paragraphs"' in head and '"relevant"' in head else None
    return None


def layout_of(path: Path) -> str | None:
    """``squad`` | ``qa_jsonl`` | ``mc_jsonl`` | ``paragraph_ids`` | None, from one file's first record."""
    record = _first_record(path)
    if not isinstance(record, dict):
        return None
    if "data" in record and path.suffix.lower() == ".json":
        return "squad"
    if "paragraphs" in record and path.suffix.lower() == ".json":
        return "paragraph_ids"
    if {"question", "choices"} <= set(record):
        return "mc_jsonl"
    if {"question", "context"} <= set(record):
        return "qa_jsonl"
    return None


def detect(path: str) -> list[str]:
    """The tasks a local data path can serve by its layout ([] when it is not QA / multiple-choice data)."""
    p = Path(path).expanduser()
    files = [p] if p.is_file() else list(find_split_files(p, EXTENSIONS).values()) if p.is_dir() else []
    for f in files:
        layout = layout_of(f)
        if layout == "paragraph_ids" and (f.parent / CONTEXTS).is_file():
            return [MC, QA]
        if layout in ("squad", "qa_jsonl"):
            return [QA]
        if layout == "mc_jsonl":
            return [MC]
    return []


# ---------------------------------------------------------------- reading


def _load_json(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"{path} is not valid UTF-8 (byte {e.start}); re-encode it as UTF-8") from None
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror or e}") from None
    try:
        if path.suffix.lower() == ".jsonl":
            return [(n, json.loads(line)) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
        return json.loads(text)
    except (ValueError, RecursionError) as e:
        raise UserError(f"{path}: not valid JSON ({str(e)[:80]})") from None


def _field(record: Any, key: str, kind: type, where: str) -> Any:
    if not isinstance(record, dict) or key not in record:
        raise UserError(f"{where}: no field {key!r}")
    value = record[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise UserError(f"{where}: {key!r} must be {kind.__name__}, got {type(value).__name__}")
    if isinstance(value, str) and not value.strip():
        raise UserError(f"{where}: {key!r} is empty")
    return value


def _check_answers(context: str, texts: list[Any], starts: list[Any], where: str) -> dict[str, list[Any]]:
    if len(texts) != len(starts):
        raise UserError(f"{where}: {len(texts)} answer texts but {len(starts)} answer starts")
    for text, start in zip(texts, starts):
        if not isinstance(text, str) or not text or not isinstance(start, int) or isinstance(start, bool):
            raise UserError(f"{where}: an answer needs a non-empty text and an integer start")
        if start < 0 or context[start : start + len(text)] != text:
            found = context[max(start, 0) : max(start, 0) + len(text)]
            raise UserError(f"{where}: the answer {text!r} is not at {start} of its context (found {found!r})")
    return {"text": list(texts), "answer_start": list(starts)}


#: the answer-offset rule, public: the runtime's file reader (bertdeploy.runtime.qa_records) checks gold answers by it
check_answers = _check_answers


def _qa_row(rows: dict[str, list[Any]], qid: Any, question: Any, context: str, answers: dict) -> None:
    rows["id"].append(str(qid))
    rows["question"].append(question)
    rows["context"].append(context)
    rows["answers"].append(answers)


def _read_squad(path: Path) -> dict[str, list[Any]]:
    doc = _load_json(path)
    rows: dict[str, list[Any]] = {"id": [], "question": [], "context": [], "answers": []}
    articles = doc.get("data") if isinstance(doc, dict) else None
    if not isinstance(articles, list):
        raise UserError(f"{path}: not SQuAD JSON (no 'data' list)")
    for a, article in enumerate(articles):
        for p, paragraph in enumerate(_field(article, "paragraphs", list, f"{path}: data[{a}]")):
            where = f"{path}: data[{a}].paragraphs[{p}]"
            context = _field(paragraph, "context", str, where)
            for q, qa in enumerate(_field(paragraph, "qas", list, where)):
                qid = qa.get("id", f"{a}-{p}-{q}") if isinstance(qa, dict) else None
                here = f"{path}: question {qid!r}"
                question = _field(qa, "question", str, here)
                answers = _field(qa, "answers", list, here)
                texts = [x.get("text") if isinstance(x, dict) else None for x in answers]
                starts = [x.get("answer_start") if isinstance(x, dict) else None for x in answers]
                _qa_row(rows, qid, question, context, _check_answers(context, texts, starts, here))
    return rows


def _read_qa_jsonl(path: Path) -> dict[str, list[Any]]:
    rows: dict[str, list[Any]] = {"id": [], "question": [], "context": [], "answers": []}
    for number, record in _load_json(path):
        qid = record.get("id", number) if isinstance(record, dict) else number
        where = f"{path}:{number} (question {qid!r})"
        context = _field(record, "context", str, where)
        answers = _field(record, "answers", dict, where)
        texts, starts = answers.get("text", []), answers.get("answer_start", [])
        if not isinstance(texts, list) or not isinstance(starts, list):
            raise UserError(f"{where}: 'answers' must hold lists 'text' and 'answer_start'")
        _qa_row(
            rows, qid, _field(record, "question", str, where), context, _check_answers(context, texts, starts, where)
        )
    return rows


def _mc_row(rows: dict[str, list[Any]], qid: Any, question: str, choices: list[Any], label: Any, where: str) -> None:
    if len(choices) < 2 or not all(isinstance(c, str) and c.strip() for c in choices):
        raise UserError(f"{where}: 'choices' must be at least 2 non-empty strings")
    if rows["choices"] and len(choices) != len(rows["choices"][0]):
        raise UserError(f"{where}: {len(choices)} choices, but the first record has {len(rows['choices'][0])}")
    if not isinstance(label, int) or isinstance(label, bool) or not 0 <= label < len(choices):
        raise UserError(f"{where}: 'label' must be a choice index in [0, {len(choices)}), got {label!r}")
    rows["id"].append(str(qid))
    rows["question"].append(question)
    rows["choices"].append(list(choices))
    rows["label"].append(label)


def _read_mc_jsonl(path: Path) -> dict[str, list[Any]]:
    rows: dict[str, list[Any]] = {"id": [], "question": [], "choices": [], "label": []}
    for number, record in _load_json(path):
        qid = record.get("id", number) if isinstance(record, dict) else number
        where = f"{path}:{number} (question {qid!r})"
        question = _field(record, "question", str, where)
        _mc_row(rows, qid, question, _field(record, "choices", list, where), record.get("label"), where)
    return rows


def _read_paragraph_ids(path: Path, task: str, contexts: list[str]) -> dict[str, list[Any]]:
    doc = _load_json(path)
    if not isinstance(doc, list):
        raise UserError(f"{path}: expected a JSON list of questions")
    mc: dict[str, list[Any]] = {"id": [], "question": [], "choices": [], "label": []}
    qa: dict[str, list[Any]] = {"id": [], "question": [], "context": [], "answers": []}
    for i, record in enumerate(doc):
        qid = record.get("id", i) if isinstance(record, dict) else i
        where = f"{path}: question {qid!r}"
        question = _field(record, "question", str, where)
        ids = _field(record, "paragraphs", list, where)
        relevant = record.get("relevant")
        if not all(isinstance(j, int) and not isinstance(j, bool) and 0 <= j < len(contexts) for j in ids):
            raise UserError(f"{where}: 'paragraphs' must be indices into {CONTEXTS} ({len(contexts)} paragraphs)")
        if relevant not in ids:
            raise UserError(f"{where}: 'relevant' ({relevant!r}) is not one of its paragraphs {ids}")
        if task == MC:
            _mc_row(mc, qid, question, [contexts[j] for j in ids], ids.index(relevant), where)
            continue
        answer = _field(record, "answer", dict, where)
        context = contexts[relevant]
        answers = _check_answers(context, [answer.get("text")], [answer.get("start")], where)
        _qa_row(qa, qid, question, context, answers)
    return mc if task == MC else qa


def read_split(path: Path, task: str) -> dict[str, list[Any]]:
    """The records of one file for ``task`` (question-answering | multiple-choice), checked."""
    layout = layout_of(path)
    if layout is None and path.suffix.lower() == ".jsonl":  # the reader names what the records lack
        layout = "qa_jsonl" if task == QA else "mc_jsonl"
    readers = {"squad": (QA, _read_squad), "qa_jsonl": (QA, _read_qa_jsonl), "mc_jsonl": (MC, _read_mc_jsonl)}
    if layout == "paragraph_ids":
        contexts = _load_json(path.parent / CONTEXTS) if (path.parent / CONTEXTS).is_file() else None
        if not isinstance(contexts, list) or not all(isinstance(c, str) for c in contexts):
            raise UserError(f"{path.parent / CONTEXTS}: expected a JSON list of paragraph strings")
        rows = _read_paragraph_ids(path, task, contexts)
    elif layout in readers and readers[layout][0] == task:
        rows = readers[layout][1](path)
    else:
        raise UserError(f"{path}: not {task} data (SQuAD JSON, JSONL or the paragraph-id layout)")
    if not rows["id"]:
        raise UserError(f"{path}: no question in the file")
    return rows


def load_qa_data(spec: DataSpec, task: str) -> LoadedData:
    """Load and split question-answering or multiple-choice data (see the module docstring)."""
    path = Path(spec.path).expanduser()
    if path.is_dir():
        files = {s: f for s, f in find_split_files(path, EXTENSIONS).items() if f.name != CONTEXTS}
    elif path.is_file():
        files = {"train": path}
    else:
        raise UserError(f"data path not found: {spec.path}")
    if not files:
        raise UserError(f"{path}: no train/validation/test file ({', '.join(EXTENSIONS)})")
    splits = {name: read_split(f, task) for name, f in files.items()}
    notes = carve(splits, spec, "questions")
    return LoadedData(splits=splits, labels=[], source=str(path), notes=notes, task=task)
