"""Output writers for ``predict_file``: jsonl, csv or tsv rows of (id or row, label, score[, probabilities]) for a
text-classification bundle, of (id or row, entities) for a token-classification one."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np

from bertdeploy.errors import UserError
from bertdeploy.outputs import special_kind

OUTPUT_FORMATS = ("jsonl", "csv", "tsv")
_SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".csv": "csv", ".tsv": "tsv"}
DECIMALS = 6


def resolve_output_format(path: str, fmt: str | None = None) -> str:
    if fmt is not None:
        if fmt not in OUTPUT_FORMATS:
            raise UserError(f"unknown output format {fmt!r}; use one of {', '.join(OUTPUT_FORMATS)}")
        return fmt
    suffix = Path(path).suffix.lower()
    if path == "-" or (suffix not in _SUFFIXES and special_kind(path) is not None):  # stdout, /dev/null, a pipe
        return "jsonl"
    if suffix not in _SUFFIXES:
        raise UserError(f"cannot tell the output format from {path!r}: name it .jsonl, .csv or .tsv")
    return _SUFFIXES[suffix]


def _plain(value: Any) -> Any:
    """numpy scalars (from parquet / Ray) -> Python values, so json and csv write them like the local engine."""
    return value.item() if isinstance(value, np.generic) else value


class RowWriter:
    """Writes one output row per predicted record; ``proba`` columns follow ``labels``."""

    def __init__(self, f: IO[str], fmt: str, key_name: str, labels: Sequence[str], probabilities: bool) -> None:
        self.f = f
        self.fmt = fmt
        self.key_name = key_name
        self.labels = list(labels)
        self.probabilities = probabilities
        self._csv = None
        if fmt in ("csv", "tsv"):
            self._csv = csv.writer(f, delimiter="," if fmt == "csv" else "\t", lineterminator="\n")
            header = [key_name, "label", "score"]
            if probabilities:
                header += [f"p_{label}" for label in self.labels]
            self._csv.writerow(header)

    def write(self, keys: Sequence[Any], label_ids: np.ndarray, proba: np.ndarray) -> None:
        proba = np.asarray(proba, dtype=np.float64)  # float32 -> float64 before rounding: short decimals
        scores = np.round(proba[np.arange(len(label_ids)), label_ids], DECIMALS).tolist()
        names = [self.labels[i] for i in label_ids.tolist()]
        all_p = np.round(proba, DECIMALS).tolist() if self.probabilities else None
        if self._csv is not None:
            for i, key in enumerate(keys):
                row = [_plain(key), names[i], scores[i]]
                if all_p is not None:
                    row += all_p[i]
                self._csv.writerow(row)
            return
        lines = []
        for i, key in enumerate(keys):
            obj: dict[str, Any] = {self.key_name: _plain(key), "label": names[i], "score": scores[i]}
            if all_p is not None:
                obj["probabilities"] = dict(zip(self.labels, all_p[i]))
            lines.append(json.dumps(obj, ensure_ascii=False))
        if lines:
            self.f.write("\n".join(lines) + "\n")

    def write_columns(self, keys: Sequence[Any], columns: dict[str, np.ndarray]) -> None:
        """:meth:`write` from the columns :func:`bertdeploy.runtime.filejob.predict_rows` returns."""
        self.write(keys, columns["label"], columns["proba"])


def entities_json(entities: Sequence[Any]) -> str:
    """One text's entities (:class:`~bertdeploy.runtime.entities.Entity`) as the JSON list a row holds: the
    transformers pipeline's dicts, scores rounded to :data:`DECIMALS`."""
    rows = []
    for entity in entities:
        row = entity.to_dict()
        row["score"] = round(float(row["score"]), DECIMALS)
        rows.append(row)
    return json.dumps(rows, ensure_ascii=False)


class EntityWriter:
    """Writes one row per text of a token-classification bundle: ``{key: ..., "entities": [...]}`` in jsonl; in csv /
    tsv the columns ``key, entities`` with the entity list as a JSON string (``json.loads`` reads it back)."""

    def __init__(self, f: IO[str], fmt: str, key_name: str) -> None:
        self.f = f
        self.key_name = key_name
        self._csv = None
        if fmt in ("csv", "tsv"):
            self._csv = csv.writer(f, delimiter="," if fmt == "csv" else "\t", lineterminator="\n")
            self._csv.writerow([key_name, "entities"])

    def write(self, keys: Sequence[Any], entities: Sequence[str]) -> None:
        """``entities``: per key, its entity list already as JSON (:func:`entities_json`)."""
        if self._csv is not None:
            self._csv.writerows([_plain(key), text] for key, text in zip(keys, entities, strict=True))
            return
        key = json.dumps(self.key_name, ensure_ascii=False)
        lines = [
            f'{{{key}: {json.dumps(_plain(k), ensure_ascii=False)}, "entities": {text}}}'
            for k, text in zip(keys, entities, strict=True)
        ]
        if lines:
            self.f.write("\n".join(lines) + "\n")

    def write_columns(self, keys: Sequence[Any], columns: dict[str, np.ndarray]) -> None:
        self.write(keys, columns["entities"].tolist())
