"""Text-classification data: load (folder | file | Hub id) → label map → validation carve-out → subset.

A *folder* holds ``train`` / ``validation`` (or ``val`` / ``dev``) / ``test`` files in csv, tsv, jsonl, json or
parquet, and optionally ``labels.txt`` (one label name per line, in id order). A *single file* is split by
ratios (stratified, seeded). Anything else is treated as a Hugging Face dataset id (``datasets.load_dataset``).
Labels may be names or integers. Every problem with the input is a :class:`UserError` with one clear line.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from bertdeploy.data.common import SPLIT_NAMES, DataSpec, LoadedData, find_split_files, read_labels_txt
from bertdeploy.errors import UserError

EXTENSIONS = (".csv", ".tsv", ".jsonl", ".json", ".parquet")


# ---------------------------------------------------------------- reading files


def read_table(path: Path, columns: tuple[str, str] | None = None) -> dict[str, list[Any]]:
    """Read one csv/tsv/jsonl/json/parquet file into ``{column: values}`` (texts kept verbatim)."""
    import pandas as pd

    suffix = path.suffix.lower()
    try:
        if suffix in (".csv", ".tsv"):
            df = pd.read_csv(
                path, sep="\t" if suffix == ".tsv" else ",", dtype=str, keep_default_na=False, encoding="utf-8"
            )
        elif suffix in (".jsonl", ".json"):
            df = pd.read_json(path, lines=suffix == ".jsonl", dtype=False, encoding="utf-8")
        elif suffix == ".parquet":
            df = pd.read_parquet(path)
        else:
            raise UserError(f"unsupported file type {suffix!r}: {path} (use one of {', '.join(EXTENSIONS)})")
    except UnicodeDecodeError as e:
        raise UserError(f"{path} is not valid UTF-8 (byte {e.start}); re-encode it as UTF-8") from None
    except (ValueError, OSError) as e:
        if isinstance(e, UserError):
            raise
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"cannot read {path}: {first}") from None
    if columns:
        for col in columns:
            if col not in df.columns:
                have = ", ".join(map(str, df.columns))
                raise UserError(f"{path}: no column {col!r} (columns: {have}); use --text-column/--label-column")
    return {str(c): df[c].tolist() for c in df.columns}


def _as_label_name(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def _texts(values: list[Any], where: str) -> list[str]:
    out = []
    for i, v in enumerate(values):
        if v is None or (isinstance(v, float) and v != v) or not str(v).strip():
            raise UserError(f"{where}: empty or missing text in row {i + 1}")
        out.append(str(v))
    return out


def _map_labels(
    raw: dict[str, list[Any]], labels: list[str], label_column: str, where: str, unknown: str = "error"
) -> tuple[list[int], list[int]]:
    """(label ids, indices of the rows kept): with ``unknown="drop"`` a label outside ``labels`` drops its row,
    with ``"unseen"`` it is an error that names ``--unseen-labels``, else a plain error."""
    index = {name: i for i, name in enumerate(labels)}
    all_int = all(n.lstrip("-").isdigit() for n in labels)
    ids, kept = [], []
    for row, value in enumerate(raw[label_column]):
        name = _as_label_name(value)
        if name == "":
            raise UserError(f"{where}: empty label in row {row + 1}")
        if name in index:
            ids.append(index[name])
        elif not all_int and name.isdigit() and int(name) < len(labels):
            ids.append(int(name))  # integer ids against named labels (labels.txt order)
        elif unknown == "drop":
            continue
        elif unknown == "unseen":
            raise UserError(
                f"{where}: label {name!r} (row {row + 1}) never appears in training (labels {labels}); "
                "pass --unseen-labels keep (the rows count as errors) or drop (the rows are removed)"
            )
        else:
            raise UserError(f"{where}: label {name!r} (row {row + 1}) is not one of the labels {labels}")
        kept.append(row)
    return ids, kept


def _infer_labels(train_raw: dict[str, list[Any]], label_column: str) -> list[str]:
    names = {_as_label_name(v) for v in train_raw[label_column]}
    names.discard("")
    if all(n.lstrip("-").isdigit() for n in names):
        return [str(i) for i in sorted(int(n) for n in names)]
    return sorted(names)


def stratified_split(labels: list[int], ratio: float, seed: int) -> tuple[list[int], list[int]]:
    """Indices (kept, held-out) with ``ratio`` of each class held out (scikit-learn, seeded)."""
    from sklearn.model_selection import train_test_split

    idx = list(range(len(labels)))
    counts = {y: labels.count(y) for y in set(labels)}
    strat = labels if min(counts.values()) >= 2 else None
    try:
        kept, held = train_test_split(idx, test_size=ratio, random_state=seed, stratify=strat)
    except ValueError:
        kept, held = train_test_split(idx, test_size=ratio, random_state=seed, stratify=None)
    return sorted(kept), sorted(held)


def take(split: dict[str, list[Any]], idx: list[int]) -> dict[str, list[Any]]:
    return {k: [v[i] for i in idx] for k, v in split.items()}


def subset(split: dict[str, list[Any]], n: int, seed: int) -> dict[str, list[Any]]:
    """A stratified, seeded subset of ``n`` rows (the whole split when it has ``n`` rows or fewer)."""
    total = len(split["label"])
    if n >= total:
        return split
    if n < 1:
        raise UserError(f"--train-size must be positive, got {n}")
    kept, _ = stratified_split(split["label"], 1 - n / total, seed)
    return take(split, kept)


# ---------------------------------------------------------------- entry points


def _load_raw(spec: DataSpec) -> tuple[dict[str, dict[str, list[Any]]], list[str] | None, str]:
    cols = (spec.text_column, spec.label_column)
    path = Path(spec.path).expanduser()
    if path.is_dir():
        files = find_split_files(path, EXTENSIONS)
        if "train" not in files and "test" not in files and "validation" not in files:
            raise UserError(f"{path}: no train/validation/test file ({', '.join(EXTENSIONS)})")
        raw = {split: read_table(f, cols) for split, f in files.items()}
        labels_txt = path / "labels.txt"
        return raw, (read_labels_txt(labels_txt) if labels_txt.is_file() else None), str(path)
    if path.is_file():
        labels_txt = path.with_name("labels.txt")
        return (
            {"train": read_table(path, cols)},
            (read_labels_txt(labels_txt) if labels_txt.is_file() else None),
            str(path),
        )
    looks_local = spec.path.startswith((".", "/", "~")) or Path(spec.path).suffix.lower() in EXTENSIONS
    if looks_local or os.sep in spec.path and spec.path.count("/") > 1:
        raise UserError(f"data path not found: {spec.path}")
    return _load_hub(spec)


def _load_hub(spec: DataSpec) -> tuple[dict[str, dict[str, list[Any]]], list[str] | None, str]:
    import contextlib

    from bertdeploy import hub

    hint = "pass a local folder or file with --data"
    online = hub.require("dataset", spec.path, hint)  # before importing datasets: offline fails at once
    import datasets

    try:
        with contextlib.nullcontext() if online else hub.offline():
            dsd = datasets.load_dataset(spec.path)
    except Exception as e:  # noqa: BLE001 - datasets raises many types; all mean "could not load"
        if not online:
            raise UserError(hub.offline_message("dataset", spec.path, hint)) from None
        raise UserError(f"cannot load dataset {spec.path!r}: {str(e).splitlines()[0]}") from None
    raw, labels = {}, None
    for name, ds in dsd.items():
        split = next((s for s, aliases in SPLIT_NAMES.items() if name in aliases), None)
        if split is None:
            continue
        for col in (spec.text_column, spec.label_column):
            if col not in ds.column_names:
                raise UserError(f"dataset {spec.path!r} split {name!r}: no column {col!r} ({ds.column_names})")
        feature = ds.features[spec.label_column]
        if labels is None and hasattr(feature, "names"):
            labels = list(feature.names)
        raw[split] = {spec.text_column: ds[spec.text_column], spec.label_column: ds[spec.label_column]}
    if labels is not None:  # ClassLabel ids -> names
        for split in raw.values():
            split[spec.label_column] = [labels[int(i)] for i in split[spec.label_column]]
    return raw, labels, f"hub:{spec.path}"


def load_table_data(spec: DataSpec, labels: list[str] | None = None) -> LoadedData:
    """Load, label-map, validate and split a text-classification dataset. ``labels`` (e.g. a trained model's)
    fixes the label order."""
    raw, file_labels, source = _load_raw(spec)
    notes: list[str] = []
    inferred = labels is None and file_labels is None
    if labels is None:
        labels = file_labels
    if labels is None:
        col = spec.label_column
        base = raw.get("train") or next(iter(raw.values()))
        if spec.unseen_labels == "keep":  # the label space is every split's
            base = {col: [v for r in raw.values() for v in r[col]]}
        labels = _infer_labels(base, col)
    splits: dict[str, dict[str, list[Any]]] = {}
    for name, r in raw.items():
        where = f"{source} [{name}]"
        texts = _texts(r[spec.text_column], where)
        if not texts:
            raise UserError(f"{where}: the split is empty")
        unknown = "error"
        if inferred and name != "train" and "train" in raw:
            unknown = "drop" if spec.unseen_labels == "drop" else "unseen"
        ids, kept = _map_labels(r, labels, spec.label_column, where, unknown)
        if len(kept) < len(texts):
            notes.append(f"{name}: dropped {len(texts) - len(kept)} row(s) whose label never appears in training")
            if not kept:
                raise UserError(f"{where}: every row has a label that never appears in training")
        splits[name] = {"text": [texts[i] for i in kept], "label": ids}
    if "train" in splits and len(splits) == 1 and spec.test_ratio > 0:
        kept, held = stratified_split(splits["train"]["label"], spec.test_ratio, spec.seed)
        splits["test"] = take(splits["train"], held)
        splits["train"] = take(splits["train"], kept)
        notes.append(f"test split carved out of the file: {len(held)} rows ({spec.test_ratio:.0%}, stratified)")
    if "train" in splits and "validation" not in splits:
        kept, held = stratified_split(splits["train"]["label"], spec.val_ratio, spec.seed)
        splits["validation"] = take(splits["train"], held)
        splits["train"] = take(splits["train"], kept)
        notes.append(f"validation carved out of train: {len(held)} rows ({spec.val_ratio:.0%}, stratified)")
    if spec.train_size and "train" in splits:
        before = len(splits["train"]["label"])
        splits["train"] = subset(splits["train"], spec.train_size, spec.seed)
        notes.append(f"train subset: {len(splits['train']['label'])} of {before} rows (stratified, seed {spec.seed})")
    return LoadedData(splits=splits, labels=list(labels), source=source, notes=notes)
