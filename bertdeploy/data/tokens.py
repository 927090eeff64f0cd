"""Token-classification data (slot tagging, NER): token JSONL and CoNLL files → tag map → splits.

Layouts (a folder of ``train`` / ``validation`` / ``test`` files, or a single file, as for text classification):

* **token JSONL** (``.jsonl``): one object per line, ``{"tokens": [str, ...], "tags": [str, ...]}`` (other keys,
  such as ``intent``, are ignored; the field names follow ``--text-column`` / ``--label-column`` when those are
  given);
* **CoNLL** (``.conll``, ``.bio``, ``.iob``): one ``token<TAB>tag`` per line (spaces also separate; with more
  columns the first is the token and the last the tag), an empty line after each sentence; ``-DOCSTART-`` lines
  are skipped.

``labels.txt`` beside the files fixes the tag order (``O`` is usually first). Tags follow a BIO scheme (``O``,
``B-TYPE``, ``I-TYPE``; ``E-`` / ``S-`` of BIOES are accepted): entity-level scores are computed from them. A
tokens / tags length mismatch, an unknown tag, an empty sentence or an empty token is one :class:`UserError`
naming the file and line.

Splits are ``{"tokens": [[str, ...], ...], "tags": [[tag id, ...], ...]}``.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from bertdeploy.data.common import SPLIT_NAMES, DataSpec, LoadedData, find_split_files, read_labels_txt
from bertdeploy.errors import UserError

TOKEN_TASK = "token-classification"
CONLL_EXTENSIONS = (".conll", ".bio", ".iob")
JSONL_EXTENSIONS = (".jsonl",)
EXTENSIONS = (*JSONL_EXTENSIONS, *CONLL_EXTENSIONS)
#: BIO / BIOES prefixes accepted on a tag (besides the plain ``O``)
PREFIXES = ("B-", "I-", "E-", "S-")
#: the record fields of token JSONL when the columns were left at their text-classification defaults
TOKENS_FIELD, TAGS_FIELD = "tokens", "tags"

Sentence = tuple[list[str], list[str], int]
"""(tokens, tags, line number of the sentence's first line)"""


def fields(text_column: str, label_column: str) -> tuple[str, str]:
    """The JSONL field names: the given columns, or ``tokens`` / ``tags`` for the text-classification defaults."""
    tokens = TOKENS_FIELD if text_column == "text" else text_column
    tags = TAGS_FIELD if label_column == "label" else label_column
    return tokens, tags


def read_conll(path: Path) -> list[Sentence]:
    """Sentences of a CoNLL file (see the module docstring)."""
    out: list[Sentence] = []
    tokens: list[str] = []
    tags: list[str] = []
    start = 1
    for number, line in enumerate(_lines(path), 1):
        if not line.strip():
            if tokens:
                out.append((tokens, tags, start))
            tokens, tags, start = [], [], number + 1
            continue
        if line.startswith("-DOCSTART-"):
            start = number + 1
            continue
        parts = line.split("\t") if "\t" in line else line.split()
        parts = [p for p in parts if p != ""] if "\t" not in line else parts
        if len(parts) < 2:
            raise UserError(f"{path}:{number}: expected 'token<TAB>tag', got {_short(line)}")
        token, tag = parts[0], parts[-1].strip()
        if token == "" or token.isspace():
            raise UserError(f"{path}:{number}: empty token")
        if not tag:
            raise UserError(f"{path}:{number}: empty tag")
        if not tokens:
            start = number
        tokens.append(token)
        tags.append(tag)
    if tokens:
        out.append((tokens, tags, start))
    return out


def read_token_jsonl(path: Path, tokens_field: str = TOKENS_FIELD, tags_field: str = TAGS_FIELD) -> list[Sentence]:
    """Sentences of a token JSONL file (see the module docstring)."""
    out: list[Sentence] = []
    for number, line in enumerate(_lines(path), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (ValueError, RecursionError) as e:
            raise UserError(f"{path}:{number}: not valid JSON ({str(e)[:80]})") from None
        if not isinstance(record, dict):
            raise UserError(f"{path}:{number}: expected a JSON object with {tokens_field!r} and {tags_field!r}")
        for key in (tokens_field, tags_field):
            if key not in record:
                have = ", ".join(map(repr, record)) or "none"
                raise UserError(f"{path}:{number}: no field {key!r} (fields: {have}); use --text-column/--label-column")
            value = record[key]
            if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
                raise UserError(f"{path}:{number}: {key!r} must be a list of strings")
        tokens, tags = record[tokens_field], record[tags_field]
        if any(t == "" or t.isspace() for t in tokens):
            raise UserError(f"{path}:{number}: empty token in {tokens_field!r}")
        out.append((list(tokens), [t.strip() for t in tags], number))
    return out


def read_sentences(path: Path, text_column: str = "text", label_column: str = "label") -> list[Sentence]:
    """Sentences of one token file, checked: non-empty, one tag per token, BIO tags."""
    suffix = path.suffix.lower()
    if suffix in CONLL_EXTENSIONS:
        sentences = read_conll(path)
    elif suffix in JSONL_EXTENSIONS:
        sentences = read_token_jsonl(path, *fields(text_column, label_column))
    else:
        raise UserError(f"unsupported token file type {suffix!r}: {path} (use one of {', '.join(EXTENSIONS)})")
    if not sentences:
        raise UserError(f"{path}: no sentence in the file")
    for tokens, tags, line in sentences:
        if not tokens:
            raise UserError(f"{path}:{line}: empty sentence (no tokens)")
        if len(tokens) != len(tags):
            raise UserError(f"{path}:{line}: {len(tokens)} tokens but {len(tags)} tags")
        for tag in tags:
            if tag != "O" and not (tag.startswith(PREFIXES) and len(tag) > 2):
                raise UserError(f"{path}:{line}: tag {tag!r} is not a BIO tag (O, B-TYPE, I-TYPE)")
    return sentences


def _lines(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"{path} is not valid UTF-8 (byte {e.start}); re-encode it as UTF-8") from None
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror or e}") from None
    return text.removeprefix("\ufeff").splitlines()


def _short(text: str) -> str:
    return repr(text) if len(text) <= 50 else repr(text[:47] + "...")


# ---------------------------------------------------------------- task detection


def is_token_file(path: Path) -> bool:
    """True for a CoNLL file, or a JSONL file whose first record has a list of ``tokens``."""
    suffix = path.suffix.lower()
    if suffix in CONLL_EXTENSIONS:
        return True
    if suffix not in JSONL_EXTENSIONS or not path.is_file():
        return False
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    record = json.loads(line)
                    return isinstance(record, dict) and isinstance(record.get(TOKENS_FIELD), list)
    except (OSError, ValueError, RecursionError):
        return False
    return False


def detect_task(path: str) -> str | None:
    """The task a local data path holds by its layout (None: not a local path or text classification)."""
    p = Path(path).expanduser()
    if p.is_file():
        return TOKEN_TASK if is_token_file(p) else None
    if p.is_dir():
        for names in SPLIT_NAMES.values():
            for name in names:
                for ext in EXTENSIONS:
                    if (p / f"{name}{ext}").is_file() and is_token_file(p / f"{name}{ext}"):
                        return TOKEN_TASK
    return None


# ---------------------------------------------------------------- loading


def _tag_space(raw: dict[str, list[Sentence]], file_labels: list[str] | None, unseen: str) -> list[str]:
    if file_labels is not None:
        return file_labels
    base = raw.get("train") or next(iter(raw.values()))
    pool = [s for split in raw.values() for s in split] if unseen == "keep" else base
    seen = {tag for _, tags, _ in pool for tag in tags}
    return ["O", *sorted(seen - {"O"})] if "O" in seen else sorted(seen)


def _map_split(
    sentences: list[Sentence], labels: list[str], where: str, unknown: str
) -> tuple[dict[str, list[Any]], int]:
    """(split, dropped sentences): tags mapped to ids; ``unknown`` is error | unseen | drop."""
    index = {name: i for i, name in enumerate(labels)}
    tokens_out, tags_out, dropped = [], [], 0
    for tokens, tags, line in sentences:
        missing = next((t for t in tags if t not in index), None)
        if missing is not None:
            if unknown == "drop":
                dropped += 1
                continue
            if unknown == "unseen":
                raise UserError(
                    f"{where}:{line}: tag {missing!r} never appears in training; pass --unseen-labels keep "
                    "(its tokens count as errors) or drop (its sentences are removed)"
                )
            raise UserError(f"{where}:{line}: tag {missing!r} is not one of the tags in labels.txt ({len(labels)})")
        tokens_out.append(tokens)
        tags_out.append([index[t] for t in tags])
    return {"tokens": tokens_out, "tags": tags_out}, dropped


def _raw(spec: DataSpec) -> tuple[dict[str, list[Sentence]], dict[str, Path], list[str] | None, str]:
    path = Path(spec.path).expanduser()
    if path.is_dir():
        files = find_split_files(path, EXTENSIONS)
        if not files:
            raise UserError(f"{path}: no train/validation/test token file ({', '.join(EXTENSIONS)})")
        labels_txt = path / "labels.txt"
    elif path.is_file():
        files = {"train": path}
        labels_txt = path.with_name("labels.txt")
    else:
        raise UserError(f"data path not found: {spec.path}")
    raw = {split: read_sentences(f, spec.text_column, spec.label_column) for split, f in files.items()}
    return raw, files, (read_labels_txt(labels_txt) if labels_txt.is_file() else None), str(path)


def _split_off(split: dict[str, list[Any]], ratio: float, seed: int) -> tuple[dict[str, list[Any]], dict]:
    n = len(split["tokens"])
    order = list(range(n))
    random.Random(seed).shuffle(order)
    held = sorted(order[: max(1, round(n * ratio))])
    kept = sorted(set(range(n)) - set(held))
    take = lambda idx: {k: [v[i] for i in idx] for k, v in split.items()}  # noqa: E731
    return take(kept), take(held)


def load_token_data(spec: DataSpec, labels: list[str] | None = None) -> LoadedData:
    """Load, tag-map, validate and split token-classification data.

    ``labels`` (a trained model's tags) fixes the tag order; else ``labels.txt``, else the tags seen in training
    (``O`` first). Tags of validation / test that training never uses follow ``spec.unseen_labels``.
    """
    raw, files, file_labels, source = _raw(spec)
    inferred = labels is None and file_labels is None
    tag_space = labels if labels is not None else _tag_space(raw, file_labels, spec.unseen_labels)
    splits, notes = {}, []
    for name, sentences in raw.items():
        unknown = "error"
        if inferred and name != "train" and "train" in raw:
            unknown = "drop" if spec.unseen_labels == "drop" else "unseen"
        splits[name], dropped = _map_split(sentences, tag_space, str(files[name]), unknown)
        if dropped:
            notes.append(f"{name}: dropped {dropped} sentence(s) with a tag that never appears in training")
            if not splits[name]["tokens"]:
                raise UserError(f"{files[name]}: every sentence has a tag that never appears in training")
    if "train" in splits and len(splits) == 1 and spec.test_ratio > 0:
        splits["train"], splits["test"] = _split_off(splits["train"], spec.test_ratio, spec.seed)
        notes.append(f"test split carved out of the file: {len(splits['test']['tokens'])} sentences (seeded)")
    if "train" in splits and "validation" not in splits:
        splits["train"], splits["validation"] = _split_off(splits["train"], spec.val_ratio, spec.seed)
        notes.append(f"validation carved out of train: {len(splits['validation']['tokens'])} sentences (seeded)")
    if spec.train_size and "train" in splits:
        before = len(splits["train"]["tokens"])
        if spec.train_size < before:
            splits["train"], _ = _split_off(splits["train"], 1 - spec.train_size / before, spec.seed)
        notes.append(f"train subset: {len(splits['train']['tokens'])} of {before} sentences (seed {spec.seed})")
    return LoadedData(splits=splits, labels=list(tag_space), source=source, notes=notes, task=TOKEN_TASK)


def entity_types(labels: list[str]) -> list[str]:
    """The entity types of a BIO tag set, sorted (``B-PER``, ``I-PER`` -> ``PER``)."""
    return sorted({tag[2:] for tag in labels if tag != "O" and tag[:2] in PREFIXES})
