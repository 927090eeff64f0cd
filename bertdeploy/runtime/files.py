"""``predict_file``: classify every record of a csv / tsv / jsonl / parquet / text file into jsonl / csv / tsv.

Streams in chunks (memory stays flat on any input size), skips empty texts and reports them by line, and
writes the output to a temporary sibling that is renamed into place only when everything succeeded.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from bertdeploy.bundle import atomic_file
from bertdeploy.errors import UserError
from bertdeploy.runtime.readers import Chunk, count_rows, detect_format, iter_chunks
from bertdeploy.runtime.writers import RowWriter, resolve_output_format

ENGINES = ("local", "ray")
#: line numbers of skipped rows kept for the report (the count is always exact)
MAX_REPORTED = 1000

ProgressFn = Callable[[int, "int | None"], None]


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
    """The non-empty texts of ``chunk`` (non-strings from jsonl / parquet are converted with ``str``) and
    their keys; empty ones are recorded in ``result``."""
    texts, keys = [], []
    for text, key, line in zip(chunk.texts, chunk.keys, chunk.lines):
        if text is None or (isinstance(text, float) and text != text) or not str(text).strip():
            result.skipped += 1
            if len(result.skipped_lines) < MAX_REPORTED:
                result.skipped_lines.append(line)
            continue
        texts.append(text if isinstance(text, str) else str(text))
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
    with atomic_file(target) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            yield f
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; a predictions file gets the usual mode


def check_paths(input: str, output: str) -> None:
    if input != "-" and output != "-" and Path(input).resolve() == Path(output).resolve():
        raise UserError("output would overwrite the input; choose another --output")
    if output != "-":
        parent = Path(output).resolve().parent
        if not parent.is_dir():
            raise UserError(f"output folder does not exist: {parent}")
        if not os.access(parent, os.W_OK):
            raise UserError(f"cannot write to {parent} (permission denied)")


def predict_file(
    bundle: str | os.PathLike[str],
    input: str,
    output: str,
    *,
    text_column: str = "text",
    id_column: str | None = None,
    input_format: str | None = None,
    output_format: str | None = None,
    variant: str = "auto",
    device: str = "auto",
    threads: int | None = None,
    batch_size: int = 64,
    max_tokens: int = 8192,
    padding: str = "bucketed",
    allow_fallback: bool = False,
    probabilities: bool = False,
    engine: str = "local",
    chunk_size: int = 4096,
    workers: int | None = None,
    progress: ProgressFn | None = None,
) -> PredictFileResult:
    """Classify every record of ``input`` ("-": stdin) and write ``output`` ("-": stdout).

    Output rows carry the input's id column (``id_column``, or a column named "id" when present) or the
    1-based record number ("row"), the label, its score and with ``probabilities`` one column per label.
    ``engine="ray"`` runs the same on Ray Data with ``workers`` actors (one session each).
    """
    input, output = str(input), str(output)
    if engine not in ENGINES:
        raise UserError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if chunk_size < 1:
        raise UserError(f"chunk_size must be >= 1, got {chunk_size}")
    fmt = detect_format(input, input_format)
    ofmt = resolve_output_format(output, output_format)
    check_paths(input, output)
    if input != "-" and not Path(input).is_file():
        raise UserError(f"input not found: {input}")
    load_kwargs = dict(
        variant=variant,
        device=device,
        threads=threads,
        batch_size=batch_size,
        max_tokens=max_tokens,
        padding=padding,
        allow_fallback=allow_fallback,
    )
    if engine == "ray":
        from bertdeploy.runtime.ray_engine import predict_file_ray

        return predict_file_ray(
            bundle,
            input,
            output,
            fmt=fmt,
            ofmt=ofmt,
            text_column=text_column,
            id_column=id_column,
            load_kwargs=load_kwargs,
            probabilities=probabilities,
            chunk_size=chunk_size,
            workers=workers,
            progress=progress,
        )

    from bertdeploy.runtime.classifier import load, softmax

    clf = load(bundle, **load_kwargs)
    result = PredictFileResult(input, output, engine, clf.variant.name, clf.providers)
    if fmt == "parquet":
        result.skipped_unit = "row"
    total = count_rows(input, fmt)
    start = time.perf_counter()
    done = 0
    with open_output(output) as f:
        writer = None
        for chunk in iter_chunks(input, fmt, text_column, id_column, chunk_size):
            if writer is None:
                writer = RowWriter(f, ofmt, chunk.key_name, clf.labels, probabilities)
            texts, keys = split_empty(chunk, result)
            if texts:
                encoded = clf.encode(texts)
                result.truncated += encoded.truncated
                proba = softmax(clf.logits_encoded(encoded))
                writer.write(keys, proba.argmax(axis=1), proba)
                result.rows += len(texts)
            done += len(chunk.texts)
            if progress is not None:
                progress(done, total)
        if result.rows == 0:
            raise UserError(f"no non-empty text in {input} (all {result.skipped} records are empty)")
    result.seconds = time.perf_counter() - start
    return result
