"""What both file engines (local, Ray) share: the result record, the empty-text rule, the checked and atomic
output. Neither engine module imports the other."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from bertdeploy import tasks
from bertdeploy.bundle import atomic_file
from bertdeploy.errors import UserError
from bertdeploy.outputs import check_inputs, special_kind
from bertdeploy.runtime.predictor import invalid_unicode
from bertdeploy.runtime.readers import Chunk
from bertdeploy.runtime.writers import EntityWriter, RowWriter, entities_json

ENGINES = ("local", "ray")
TOKENS = "token-classification"
#: line numbers of skipped rows kept for the report (the count is always exact)
MAX_REPORTED = 1000

ProgressFn = Callable[[int, "int | None"], None]


@dataclass(frozen=True)
class FileJob:
    """One ``predict_file`` call, checked: paths, formats, columns and how to read and write."""

    bundle: str
    input: str
    output: str
    fmt: str
    ofmt: str
    text_column: str
    id_column: str | None
    probabilities: bool
    chunk_size: int
    task: str = tasks.DEFAULT
    """The bundle's task: what a row holds (a label and score, or the text's entities)."""
    aggregation: str = "simple"
    """Token classification: how tokens become entities (:data:`bertdeploy.runtime.entities.AGGREGATIONS`)."""
    ignore_labels: tuple[str, ...] = ("O",)
    """Token classification: entity groups (tags with aggregation ``none``) left out of the rows."""
    decoding: str = "bio"
    """Token classification: how tags are chosen (:data:`bertdeploy.runtime.entities.DECODINGS`)."""

    @property
    def words(self) -> bool:
        """Whether a record may hold pre-split words (a list of strings) instead of a text."""
        return self.task == TOKENS


@dataclass
class PredictFileResult:
    input: str
    output: str
    engine: str
    variant: str
    providers: list[str]
    rows: int = 0
    """records predicted and written."""
    skipped: int = 0
    """empty records skipped (not fatal)."""
    skipped_lines: list[int] = field(default_factory=list)
    """their line numbers (row numbers for parquet / Ray, see ``skipped_unit``), at most ``MAX_REPORTED``."""
    skipped_unit: str = "line"
    truncated: int = 0
    """texts longer than the bundle's max_length (cut, still predicted; token classification: windowed, whole)."""
    seconds: float = 0.0
    task: str = tasks.DEFAULT
    metrics: dict[str, Any] = field(default_factory=dict)
    """Question answering / multiple choice: the scores against the input's gold answers or labels, if any."""

    @property
    def texts_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0


def split_empty(chunk: Chunk, result: PredictFileResult, words: bool = False) -> tuple[list[Any], list[Any]]:
    """The texts of ``chunk`` that are predicted, and their keys.

    The rule for texts (the same as the API's, :func:`bertdeploy.runtime.predictor.check_texts`): an empty or
    blank text, a missing one (JSON ``null``, a parquet null) is never predicted: it is skipped and its line
    recorded in ``result``. A value that is not a string (a JSON number, list or object; a numeric parquet
    column) and a text, word or id that is not valid Unicode (a lone surrogate from a JSON ``"\\ud800"``) are a
    :class:`UserError` naming its line; ``str`` subclasses are taken as text. With ``words`` (a
    token-classification bundle) a list of strings is a pre-split sentence: an empty list is skipped like an
    empty text, a list holding anything but non-blank strings is an error naming its line.
    """
    texts, keys = [], []
    for text, key, line in zip(chunk.texts, chunk.keys, chunk.lines):
        if words and isinstance(text, (list, tuple)):
            if text and not all(isinstance(w, str) and w.strip() for w in text):
                raise UserError(
                    f"{result.input}: the words at {result.skipped_unit} {line} must be non-blank strings, got "
                    f"{_shown(text)}"
                )
            text = list(text) or None
        elif not isinstance(text, str) and text is not None and not (isinstance(text, float) and text != text):
            kind = {bool: "boolean", int: "number", float: "number", list: "list", dict: "object"}
            raise UserError(
                f"{result.input}: the text at {result.skipped_unit} {line} is a "
                f"{kind.get(type(text), type(text).__name__)} ({_shown(text)}), not a string"
            )
        if text is None or (isinstance(text, str) and not text.strip()) or isinstance(text, float):
            result.skipped += 1
            if len(result.skipped_lines) < MAX_REPORTED:
                result.skipped_lines.append(line)
            continue
        for what, value in (("text", text), ("id", key)):
            for part in value if isinstance(value, list) else [value]:
                if isinstance(part, str) and (wrong := invalid_unicode(part)) is not None:
                    raise UserError(f"{result.input}: the {what} at {result.skipped_unit} {line} {wrong}")
        texts.append(text if type(text) in (str, list) else str(text))
        keys.append(key)
    return texts, keys


def _shown(value: Any) -> str:
    return repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."


@contextlib.contextmanager
def open_output(path: str) -> Iterator[IO[str]]:
    """stdout for "-", else a temporary sibling renamed to ``path`` when the block succeeds."""
    if path == "-":
        yield sys.stdout
        sys.stdout.flush()
        return
    target = Path(path)
    if target.is_dir():
        raise UserError(f"output is a folder: {path}")
    with atomic_file(target) as tmp, open(tmp, "w", encoding="utf-8", newline="") as f:
        yield f


def check_paths(input: str, output: str, bundle: str | None = None) -> None:
    """The output must not be the input nor lie inside the bundle; its folder must exist and be writable (a pipe or
    a device is written in place); stdin / stdout must be open when they are used."""
    if output == "-" and sys.stdout is None:
        raise UserError("stdout is closed: nowhere to write --output -")
    if input != "-" and output != "-" and Path(input).resolve() == Path(output).resolve():
        raise UserError("output would overwrite the input; choose another --output")
    if output != "-" and special_kind(output) is None:
        check_inputs(output, [bundle], "output")
        parent = Path(output).resolve().parent
        if not parent.is_dir():
            raise UserError(f"output folder does not exist: {parent}")
        if not os.access(parent, os.W_OK):
            raise UserError(f"cannot write to {parent} (permission denied)")


def predict_rows(predictor: Any, texts: list[Any], job: FileJob) -> tuple[dict[str, np.ndarray], int]:
    """The output columns of ``texts`` (one entry per text) and how many were truncated / windowed: ``label`` ids
    and ``proba`` for text classification, ``entities`` (JSON strings) for token classification. Both engines
    call this, so their rows are the same."""
    encoded = predictor.encode(texts)
    outputs = predictor.forward(encoded)
    if job.task == TOKENS:
        found = predictor.decode(outputs, job.aggregation, job.ignore_labels, decoding=job.decoding)
        return {"entities": np.array([entities_json(e) for e in found], dtype=object)}, encoded.truncated
    from bertdeploy.runtime.classifier import softmax

    proba = softmax(outputs)
    return {"label": proba.argmax(axis=1), "proba": proba}, encoded.truncated


def blank_columns(job: FileJob, n: int, num_labels: int) -> dict[str, np.ndarray]:
    """:func:`predict_rows`' columns for ``n`` skipped records (the Ray actors fill them in place)."""
    if job.task == TOKENS:
        return {"entities": np.full(n, "[]", dtype=object)}
    return {"label": np.full(n, -1, dtype=np.int64), "proba": np.zeros((n, num_labels), dtype=np.float32)}


def make_writer(f: IO[str], job: FileJob, key_name: str, labels: list[str]) -> RowWriter | EntityWriter:
    """The writer of the job's task (both have ``write_columns(keys, columns)``)."""
    if job.task == TOKENS:
        return EntityWriter(f, job.ofmt, key_name)
    return RowWriter(f, job.ofmt, key_name, labels, job.probabilities)
