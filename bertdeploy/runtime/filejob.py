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

from bertdeploy.bundle import atomic_file
from bertdeploy.errors import UserError
from bertdeploy.outputs import check_inputs, special_kind
from bertdeploy.runtime.predictor import invalid_unicode
from bertdeploy.runtime.readers import Chunk

ENGINES = ("local", "ray")
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
    """texts longer than the bundle's max_length (cut, still predicted)."""
    seconds: float = 0.0

    @property
    def texts_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0


def split_empty(chunk: Chunk, result: PredictFileResult) -> tuple[list[str], list[Any]]:
    """The texts of ``chunk`` that are classified, and their keys.

    The rule for texts (the same as the API's, :func:`bertdeploy.runtime.predictor.check_texts`): an empty or
    blank text, a missing one (JSON ``null``, a parquet null) is never classified: it is skipped and its line
    recorded in ``result``. A value that is not a string (a JSON number, list or object; a numeric parquet
    column) and a text or id that is not valid Unicode (a lone surrogate from a JSON ``"\\ud800"``) are a
    :class:`UserError` naming its line; ``str`` subclasses are taken as text.
    """
    texts, keys = [], []
    for text, key, line in zip(chunk.texts, chunk.keys, chunk.lines):
        if not isinstance(text, str) and text is not None and not (isinstance(text, float) and text != text):
            kind = {bool: "boolean", int: "number", float: "number", list: "list", dict: "object"}
            shown = repr(text) if len(repr(text)) <= 40 else repr(text)[:37] + "..."
            raise UserError(
                f"{result.input}: the text at {result.skipped_unit} {line} is a "
                f"{kind.get(type(text), type(text).__name__)} ({shown}), not a string"
            )
        if text is None or not isinstance(text, str) or not text.strip():
            result.skipped += 1
            if len(result.skipped_lines) < MAX_REPORTED:
                result.skipped_lines.append(line)
            continue
        for what, value in (("text", text), ("id", key)):
            if isinstance(value, str) and (wrong := invalid_unicode(value)) is not None:
                raise UserError(f"{result.input}: the {what} at {result.skipped_unit} {line} {wrong}")
        texts.append(text if type(text) is str else str(text))
        keys.append(key)
    return texts, keys


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
