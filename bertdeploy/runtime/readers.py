"""Streaming readers for ``predict_file``: csv / tsv / jsonl / parquet / plain text, in chunks.

Every reader yields :class:`Chunk` objects of at most ``chunk_size`` records, so memory stays flat on any file
size. Records are numbered from 1 (``row``); ``line`` is the line of the file the record ends on (for parquet
it is the row number). Standard library only, except parquet (pyarrow, imported when needed).
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from bertdeploy.errors import UserError
from bertdeploy.outputs import special_kind

FORMATS = ("csv", "tsv", "jsonl", "parquet", "text")
_SUFFIXES = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".txt": "text",
    ".text": "text",
}


@dataclass
class Chunk:
    texts: list[Any] = field(default_factory=list)
    """raw values of the text column (may be empty, None or not a string)."""
    keys: list[Any] = field(default_factory=list)
    """the id column's values, or the row numbers when the input has no id column."""
    lines: list[int] = field(default_factory=list)
    key_name: str = "row"
    """the name of ``keys``: the id column's name, or "row"."""


def detect_format(path: str, fmt: str | None = None) -> str:
    """The input format: ``fmt`` if given, else from the file suffix (stdin "-": text)."""
    if fmt is not None:
        if fmt not in FORMATS:
            raise UserError(f"unknown input format {fmt!r}; use one of {', '.join(FORMATS)}")
        return fmt
    if path == "-":
        return "text"
    return _SUFFIXES.get(Path(path).suffix.lower(), "text")


def is_stream(path: str) -> bool:
    """True for "-" (stdin) and for a path that is a pipe or a character device (a FIFO, ``/dev/stdin``, the
    ``/dev/fd/N`` of a shell's ``<(...)``): read once, front to back, never counted or reopened."""
    return path == "-" or special_kind(path) in ("pipe", "device")


def count_rows(path: str, fmt: str) -> int | None:
    """A fast estimate of the number of records (for the progress bar); None when unknown (stdin, a pipe)."""
    if is_stream(path):
        return None
    if fmt == "parquet":
        import pyarrow.parquet as pq

        try:
            return int(pq.ParquetFile(path).metadata.num_rows)
        except Exception:
            return None
    lines, last = 0, b"\n"
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            lines += block.count(b"\n")
            last = block[-1:]
    lines += last != b"\n"
    return max(lines - (fmt in ("csv", "tsv")), 0)


def _open_text(path: str) -> IO[str]:
    if path == "-":
        if sys.stdin is None:
            raise UserError("stdin is closed: nothing to read for --input -")
        return io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8-sig", errors="strict", newline="")
    check_input(path)
    return open(path, encoding="utf-8-sig", errors="strict", newline="")


def check_input(path: str) -> None:
    """An input is "-", a file, or a pipe / character device (:func:`is_stream`); else one line saying which."""
    if path == "-":
        if sys.stdin is None:
            raise UserError("stdin is closed: nothing to read for --input -")
        return
    p = Path(path)
    if p.is_file() or is_stream(path):
        return
    if not os.path.lexists(p):
        raise UserError(f"input not found: {path}")
    if p.is_dir():
        raise UserError(f"input is a folder, not a file: {path}")
    raise UserError(f"input is not a readable file or pipe: {path}")


def _pick_columns(columns: list[str], text_column: str, id_column: str | None, path: str) -> tuple[str, str | None]:
    if text_column not in columns:
        shown = ", ".join(map(str, columns[:20])) or "none"
        raise UserError(f"text column {text_column!r} not found in {path} (columns: {shown}); use --text-column")
    if id_column is not None and id_column not in columns:
        raise UserError(f"id column {id_column!r} not found in {path}")
    if id_column is None and "id" in columns and text_column != "id":
        id_column = "id"
    return text_column, id_column


def _chunks(records: Iterator[tuple[Any, Any, int, str]], chunk_size: int) -> Iterator[Chunk]:
    chunk = Chunk()
    for text, key, line, key_name in records:
        chunk.texts.append(text)
        chunk.keys.append(key)
        chunk.lines.append(line)
        chunk.key_name = key_name
        if len(chunk.texts) >= chunk_size:
            yield chunk
            chunk = Chunk()
    if chunk.texts:
        yield chunk


def _delimited(f: IO[str], delimiter: str, text_column: str, id_column: str | None, path: str):
    """Records of a csv / tsv file, read strictly: a quote that never closes (which would swallow the records after
    it) or text after a closing quote is an error, and so is a record with more fields than the header; one with
    fewer leaves the missing fields empty (as pandas does)."""
    reader = csv.reader(f, delimiter=delimiter, strict=True)
    try:
        header = next(reader, None)
        if header is None:
            raise UserError(f"input is empty: {path}")
        text_column, id_column = _pick_columns(header, text_column, id_column, path)
        ti = header.index(text_column)
        ii = header.index(id_column) if id_column else None
        key_name = id_column or "row"
        row = 0
        for values in reader:
            if not values:  # a blank line is not a record
                continue
            row += 1
            if len(values) > len(header):
                raise UserError(
                    f"{path}: record {row} (ending on line {reader.line_num}) has {len(values)} fields, the header "
                    f"{len(header)}: a delimiter inside an unquoted text, or a stray quote"
                )
            text = values[ti] if ti < len(values) else ""
            key = (values[ii] if ii < len(values) else "") if ii is not None else row
            yield text, key, reader.line_num, key_name
    except csv.Error as e:
        hint = " (a quote that is never closed)" if "unexpected end of data" in str(e) else ""
        fmt = "tsv" if delimiter == "\t" else "csv"
        raise UserError(f"{path}: malformed {fmt} at line {reader.line_num}: {e}{hint}") from None


def _jsonl(f: IO[str], text_column: str, id_column: str | None, path: str):
    row = 0
    checked = False
    for line_no, line in enumerate(f, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise UserError(f"{path}:{line_no}: invalid JSON ({e.msg})") from None
        except RecursionError:
            raise UserError(f"{path}:{line_no}: JSON nested too deeply to read") from None
        except ValueError as e:  # e.g. an integer of more than 4300 digits (Python's int_max_str_digits)
            raise UserError(f"{path}:{line_no}: unreadable JSON ({str(e).splitlines()[0][:120]})") from None
        if not isinstance(obj, dict):
            raise UserError(f"{path}:{line_no}: expected a JSON object per line")
        if not checked:
            text_column, id_column = _pick_columns(list(obj), text_column, id_column, path)
            checked = True
        row += 1
        yield obj.get(text_column), (obj.get(id_column) if id_column else row), line_no, id_column or "row"


def _text(f: IO[str]):
    for line_no, line in enumerate(f, 1):
        yield line.rstrip("\r\n"), line_no, line_no, "row"


def _parquet(path: str, text_column: str, id_column: str | None, chunk_size: int) -> Iterator[Chunk]:
    import pyarrow.parquet as pq

    if is_stream(path):
        raise UserError("parquet cannot be read from stdin or a pipe; pass a file")
    check_input(path)
    try:
        pf = pq.ParquetFile(path)
    except Exception as e:
        raise UserError(f"not a readable parquet file: {path} ({str(e).splitlines()[0]})") from None
    text_column, id_column = _pick_columns(pf.schema_arrow.names, text_column, id_column, path)
    columns = [text_column] + ([id_column] if id_column else [])
    row = 0
    for batch in pf.iter_batches(batch_size=chunk_size, columns=columns):
        texts = batch.column(text_column).to_pylist()
        rows = list(range(row + 1, row + len(texts) + 1))
        keys = batch.column(id_column).to_pylist() if id_column else rows
        row += len(texts)
        yield Chunk(texts=texts, keys=keys, lines=rows, key_name=id_column or "row")


def iter_chunks(
    path: str, fmt: str, text_column: str = "text", id_column: str | None = None, chunk_size: int = 4096
) -> Iterator[Chunk]:
    """Yield the input's records in chunks; raises :class:`UserError` for a missing file / column, bad
    encoding, malformed JSON and an input without any record."""
    if fmt == "parquet":
        chunks = _parquet(path, text_column, id_column, chunk_size)
    else:
        chunks = _text_chunks(path, fmt, text_column, id_column, chunk_size)
    empty = True
    for chunk in chunks:
        empty = False
        yield chunk
    if empty:
        raise UserError(f"input is empty (no records): {path}")


#: the csv module's field limit while a file is read (its default, 131,072 characters, would reject a whole file
#: for one long text; the runtime truncates to max_length tokens anyway). Restored when reading ends.
CSV_FIELD_LIMIT = 2**31 - 1


def _text_chunks(path: str, fmt: str, text_column: str, id_column: str | None, chunk_size: int):
    f = _open_text(path)
    line = 0
    field_limit = csv.field_size_limit(max(csv.field_size_limit(), CSV_FIELD_LIMIT))
    try:
        if fmt in ("csv", "tsv"):
            records = _delimited(f, "," if fmt == "csv" else "\t", text_column, id_column, path)
        elif fmt == "jsonl":
            records = _jsonl(f, text_column, id_column, path)
        else:
            records = _text(f)
        for chunk in _chunks(records, chunk_size):
            line = chunk.lines[-1]
            yield chunk
    except UnicodeDecodeError:
        raise UserError(f"{path} is not UTF-8 text (decoding failed after line {line}); re-encode it") from None
    except csv.Error as e:
        raise UserError(f"{path}: malformed {fmt} after line {line}: {e}") from None
    finally:
        csv.field_size_limit(field_limit)
        if path == "-":
            f.detach()  # closing the wrapper would close the process's stdin
        else:
            f.close()
