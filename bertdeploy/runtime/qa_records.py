"""The records ``predict_file`` reads for a question-answering or multiple-choice bundle, and for the two-stage
reader (a selection bundle, then a QA bundle), from the data package's formats:

* SQuAD v1.1 JSON (``{"data": [{"paragraphs": [{"context", "qas": [...]}]}]}``): question answering;
* the paragraph-id layout (a JSON list of ``{"id", "question", "paragraphs": [ids], "relevant", "answer"}`` beside
  a ``context.json``): every kind (QA reads the relevant paragraph, MC and the two-stage reader the candidates);
* JSONL (or a JSON list of objects), csv / tsv, parquet with columns ``question`` + ``context`` (QA: ``answers``
  optional, the flattened ``{"text": [...], "answer_start": [...]}``), ``question`` + ``choices`` (MC, ``label``
  optional; a csv cell holds the JSON list) or ``question`` + ``paragraphs`` (two-stage, ``relevant`` and
  ``answers`` optional).

The whole input is read and checked before a model runs: a missing field, an empty question / context / choice, an
answer that is not at its offset in the context, a choice count that differs from the first record's is one
:class:`UserError` naming the file and the record (its line or number, and its id). Gold answers and labels, where
present, are kept for the scores ``predict_file`` reports.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bertdeploy.data.qa import check_answers
from bertdeploy.errors import UserError
from bertdeploy.runtime.predictor import invalid_unicode

QA, MC, SELECT = "question-answering", "multiple-choice", "two-stage"
KINDS = (QA, MC, SELECT)
INPUT_FORMATS = ("json", "jsonl", "csv", "tsv", "parquet")
CONTEXTS = "context.json"
_SUFFIXES = {".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".tsv": "tsv",
             ".tab": "tsv", ".parquet": "parquet", ".pq": "parquet"}  # fmt: skip


@dataclass(frozen=True, slots=True)
class QARecord:
    """One checked question: ``context`` (QA) or ``choices`` (MC: the choices; two-stage: the candidate
    paragraphs), and its gold ``answers`` / ``label`` when the input has them."""

    row: int
    id: Any
    question: str
    context: str = ""
    choices: tuple[str, ...] = ()
    answers: tuple[str, ...] | None = None
    label: int | None = None
    paragraph_ids: tuple[int, ...] = ()


def input_format(path: str, fmt: str | None) -> str:
    """``fmt`` if given, else from the suffix; stdin needs ``fmt``."""
    if fmt is not None:
        if fmt not in INPUT_FORMATS:
            raise UserError(f"input format {fmt!r} cannot hold questions; use one of {', '.join(INPUT_FORMATS)}")
        return fmt
    found = _SUFFIXES.get(Path(path).suffix.lower()) if path != "-" else None
    if found is None:
        raise UserError(f"cannot tell the format of {path!r}; name it .json, .jsonl, .csv, .tsv or .parquet, or pass "
                        "--input-format")  # fmt: skip
    return found


def read_records(path: str, fmt: str, kind: str, id_column: str | None = None) -> list[QARecord]:
    """Every record of ``path`` for ``kind`` (:data:`KINDS`), checked (see the module docstring)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}")
    if fmt == "parquet":
        return _from_objects(_parquet(path), path, kind, id_column)
    text = _read_text(path)
    if fmt in ("csv", "tsv"):
        return _from_objects(_delimited(text, fmt, path), path, kind, id_column)
    if fmt == "json":
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as e:
            if e.msg != "Extra data":
                raise UserError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
        except RecursionError:
            raise UserError(f"{path}: JSON nested too deeply to read") from None
        else:
            return _from_document(doc, path, kind, id_column)
    return _from_objects(_jsonl(text, path), path, kind, id_column)


def _read_text(path: str) -> str:
    try:
        if path == "-":
            if sys.stdin is None:
                raise UserError("stdin is closed: nothing to read for --input -")
            return io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8-sig").read()
        return Path(path).read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise UserError(f"{path} is not UTF-8 text (byte {e.start}); re-encode it") from None
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror or e}") from None


def _jsonl(text: str, path: str) -> Iterator[tuple[str, Any]]:
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            yield f"{path}:{number}", json.loads(line)
        except (ValueError, RecursionError) as e:
            raise UserError(f"{path}:{number}: invalid JSON ({str(e)[:80]})") from None


def _delimited(text: str, fmt: str, path: str) -> Iterator[tuple[str, Any]]:
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter="," if fmt == "csv" else "\t", strict=True)
    try:
        for row in reader:
            where = f"{path}:{reader.line_num}"
            if None in row:
                raise UserError(f"{where}: more fields than the header")
            yield where, {k: _cell(k, v, where) for k, v in row.items()}
    except csv.Error as e:
        raise UserError(f"{path}: malformed {fmt} at line {reader.line_num}: {e}") from None


def _cell(key: str, value: str | None, where: str) -> Any:
    """A csv cell: ``choices`` / ``paragraphs`` / ``answers`` hold JSON; ``label`` / ``relevant`` an integer."""
    if value is None or key not in ("choices", "paragraphs", "answers", "label", "relevant"):
        return value
    if not value.strip():
        return None
    try:
        return json.loads(value)
    except ValueError:
        raise UserError(f"{where}: the {key!r} cell is not JSON ({value[:40]!r})") from None


def _parquet(path: str) -> Iterator[tuple[str, Any]]:
    import pyarrow.parquet as pq

    if path == "-":
        raise UserError("parquet cannot be read from stdin; pass a file")
    try:
        rows = pq.read_table(path).to_pylist()
    except Exception as e:
        raise UserError(f"not a readable parquet file: {path} ({str(e).splitlines()[0]})") from None
    for i, row in enumerate(rows, 1):
        yield f"{path}: row {i}", row


def _from_document(doc: Any, path: str, kind: str, id_column: str | None) -> list[QARecord]:
    if isinstance(doc, dict) and "data" in doc:
        if kind != QA:
            raise UserError(f"{path} is SQuAD JSON (question answering); a {_what(kind)} needs choices")
        return _squad(doc, path)
    if isinstance(doc, list) and doc and isinstance(doc[0], dict) and "relevant" in doc[0]:
        return _paragraph_ids(doc, path, kind)
    if isinstance(doc, list):
        return _from_objects(((f"{path}: record {i}", r) for i, r in enumerate(doc, 1)), path, kind, id_column)
    return _from_objects(iter([(f"{path}:1", doc)]), path, kind, id_column)


def _what(kind: str) -> str:
    return {QA: "question-answering bundle", MC: "multiple-choice bundle", SELECT: "two-stage reader"}[kind]


def _text(record: Any, key: str, where: str) -> str:
    if not isinstance(record, dict) or key not in record or record[key] is None:
        raise UserError(f"{where}: no field {key!r}")
    value = record[key]
    if not isinstance(value, str):
        raise UserError(f"{where}: {key!r} is {type(value).__name__}, not a string")
    if not value.strip():
        raise UserError(f"{where}: the {key} is empty")
    if (wrong := invalid_unicode(value)) is not None:
        raise UserError(f"{where}: the {key} {wrong}")
    return value


def _texts(record: dict, key: str, where: str) -> tuple[str, ...]:
    value = record.get(key)
    if not isinstance(value, list) or len(value) < 2:
        raise UserError(f"{where}: {key!r} must be a list of at least 2 strings")
    return tuple(_text({key: v}, key, f"{where}: {key}[{i}]") for i, v in enumerate(value))


def _answers(context: str, texts: Any, starts: Any, where: str) -> tuple[str, ...]:
    """The gold answer texts, each checked at its offset by the data package's one rule."""
    if not isinstance(texts, list) or not isinstance(starts, list):
        raise UserError(f"{where}: 'answers' must hold lists 'text' and 'answer_start'")
    return tuple(check_answers(context, texts, starts, where)["text"])


def _index(value: Any, n: int, key: str, where: str) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < n:
        raise UserError(f"{where}: {key!r} must be an index in [0, {n}), got {value!r}")
    return value


def _from_objects(items: Iterator[tuple[str, Any]], path: str, kind: str, id_column: str | None) -> list[QARecord]:
    out: list[QARecord] = []
    for row, (where, obj) in enumerate(items, 1):
        if not isinstance(obj, dict):
            raise UserError(f"{where}: expected an object with a 'question'")
        if id_column is not None and id_column not in obj:
            raise UserError(f"{where}: no id column {id_column!r}")
        qid = obj.get(id_column or "id")
        where = f"{where} (id {qid!r})" if qid is not None else where
        out.append(_record(obj, row, qid, kind, where))
        if kind != QA and len(out[-1].choices) != len(out[0].choices):
            n, first = len(out[-1].choices), len(out[0].choices)
            raise UserError(f"{where}: {n} {'choices' if kind == MC else 'paragraphs'}, the first record has {first}")
    if not out:
        raise UserError(f"input is empty (no records): {path}")
    return out


def _record(obj: dict, row: int, qid: Any, kind: str, where: str) -> QARecord:
    question = _text(obj, "question", where)
    if kind == QA:
        context = _text(obj, "context", where)
        gold = obj.get("answers")
        if gold is not None and not isinstance(gold, dict):
            raise UserError(f"{where}: 'answers' must be {{'text': [...], 'answer_start': [...]}}")
        answers = _answers(context, gold.get("text"), gold.get("answer_start"), where) if gold else None
        return QARecord(row, qid, question, context=context, answers=answers)
    key = "choices" if kind == MC or "paragraphs" not in obj else "paragraphs"
    choices = _texts(obj, key, where)
    label = _index(obj.get("label" if kind == MC else "relevant", obj.get("label")), len(choices), "label", where)
    answers = None
    if kind == SELECT and isinstance(obj.get("answers"), dict):
        if label is None:
            raise UserError(f"{where}: 'answers' need 'relevant' (the paragraph that holds them)")
        gold = obj["answers"]
        answers = _answers(choices[label], gold.get("text"), gold.get("answer_start"), where)
    return QARecord(row, qid, question, choices=choices, answers=answers, label=label)


def _squad(doc: dict, path: str) -> list[QARecord]:
    out: list[QARecord] = []
    articles = doc["data"] if isinstance(doc["data"], list) else None
    if articles is None:
        raise UserError(f"{path}: not SQuAD JSON ('data' is not a list)")
    for a, article in enumerate(articles):
        paragraphs = article.get("paragraphs") if isinstance(article, dict) else None
        if not isinstance(paragraphs, list):
            raise UserError(f"{path}: data[{a}] has no 'paragraphs' list")
        for p, paragraph in enumerate(paragraphs):
            where = f"{path}: data[{a}].paragraphs[{p}]"
            context = _text(paragraph, "context", where)
            qas = paragraph.get("qas")
            if not isinstance(qas, list):
                raise UserError(f"{where}: no 'qas' list")
            for q, qa in enumerate(qas):
                qid = qa.get("id") if isinstance(qa, dict) else None
                here = f"{where}.qas[{q}]" + (f" (id {qid!r})" if qid is not None else "")
                question = _text(qa, "question", here)
                gold = qa.get("answers") or None
                if gold is not None and not (isinstance(gold, list) and all(isinstance(g, dict) for g in gold)):
                    raise UserError(f"{here}: 'answers' must be a list of {{'text', 'answer_start'}}")
                answers = None
                if gold:
                    texts, starts = [g.get("text") for g in gold], [g.get("answer_start") for g in gold]
                    answers = _answers(context, texts, starts, here)
                out.append(QARecord(len(out) + 1, qid, question, context=context, answers=answers))
    if not out:
        raise UserError(f"input is empty (no questions): {path}")
    return out


def _contexts(path: str) -> list[str]:
    file = Path(path).parent / CONTEXTS
    if path == "-" or not file.is_file():
        raise UserError(f"{path} is in the paragraph-id layout but has no {CONTEXTS} beside it")
    try:
        contexts = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise UserError(f"cannot read {file}: {str(e)[:80]}") from None
    if not isinstance(contexts, list) or not all(isinstance(c, str) for c in contexts):
        raise UserError(f"{file}: expected a JSON list of paragraph strings")
    return contexts


def _paragraph(contexts: list[str], j: int, where: str) -> str:
    return _text({"paragraph": contexts[j]}, "paragraph", f"{where}: {CONTEXTS}[{j}]")


def _paragraph_ids(doc: list, path: str, kind: str) -> list[QARecord]:
    contexts = _contexts(path)
    out: list[QARecord] = []
    for i, record in enumerate(doc):
        qid = record.get("id") if isinstance(record, dict) else None
        where = f"{path}: question {qid if qid is not None else f'#{i + 1}'!r}"
        question = _text(record, "question", where)
        ids = record.get("paragraphs")
        if not isinstance(ids, list) or not all(type(j) is int and 0 <= j < len(contexts) for j in ids) or not ids:
            raise UserError(f"{where}: 'paragraphs' must be indices into {CONTEXTS} ({len(contexts)} paragraphs)")
        relevant = record.get("relevant")
        if relevant is not None and relevant not in ids:
            raise UserError(f"{where}: 'relevant' ({relevant!r}) is not one of its paragraphs {ids}")
        if kind == QA and relevant is None:
            raise UserError(f"{where}: no 'relevant' paragraph to read the answer from")
        label = ids.index(relevant) if relevant is not None else None
        answers = None
        if isinstance(record.get("answer"), dict) and relevant is not None:
            gold = record["answer"]
            answers = _answers(contexts[relevant], [gold.get("text")], [gold.get("start")], where)
        if kind == QA:
            out.append(QARecord(i + 1, qid, question, context=_paragraph(contexts, relevant, where), answers=answers))
            continue
        choices = tuple(_paragraph(contexts, j, where) for j in ids)
        if out and len(choices) != len(out[0].choices):
            raise UserError(f"{where}: {len(choices)} paragraphs, the first question has {len(out[0].choices)}")
        out.append(QARecord(i + 1, qid, question, choices=choices, answers=answers, label=label,
                            paragraph_ids=tuple(ids)))  # fmt: skip
    if not out:
        raise UserError(f"input is empty (no questions): {path}")
    return out
