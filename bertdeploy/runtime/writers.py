"""Output writers for ``predict_file``: jsonl, csv or tsv rows of (id or row, label, score[, probabilities])."""

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
