"""The teacher of ``bertdeploy distill``: a bundle (scored with our ONNX runtime, no torch model in memory) or a
run folder (scored with PyTorch), its task and labels, and its logits on a list of texts (text classification: one
row a text) or of pre-split sentences (token classification: one row a *word*, the logits of the word's first
sub-token in the teacher's own tokenization; NaN where the teacher's max_length cut the word off), computed once
and cached.

Each model reads the texts with ITS OWN tokenizer and ``max_length``: a teacher whose vocabulary differs from the
student's is no problem, the student's inputs are tokenized separately (words are what the two tokenizations
share). The cache is one ``.npy`` file (loaded with ``allow_pickle=False``) named by a hash of the teacher's
weights, its max_length and the texts.

Several teachers, comma-separated (``--teacher runs/a,runs/b,runs/c``), form an ensemble (Hinton et al. 2015): each
scores the texts on its own, and the soft labels are the log of their mean probabilities. Three MiniLM-L6 SNIPS slot
taggers at 0.953-0.955 test F1 score 0.961 together (but 0.956 on validation, no better than their best member); one
MiniLM-L6 distilled from them stayed at its initialisation's level (``benchmarks/snips_slots/README.md``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bertdeploy import bundle as _bundle
from bertdeploy import tasks
from bertdeploy.errors import UserError

#: the tasks a teacher can have (the others have no per-label logits to distil)
TEACHER_TASKS = ("text-classification", "token-classification")
#: joins the words of a sentence into one cache key
WORD_SEP = "\x1f"
#: separates the members of an ensemble teacher
ENSEMBLE_SEP = ","


@dataclass
class Teacher:
    """A resolved teacher (nothing loaded yet)."""

    kind: str  # "bundle" | "run"
    path: Path
    labels: list[str]
    max_length: int
    identity: str
    """sha256 of the weights that score the texts (the bundle variant's, or the run's model.safetensors)."""
    variant: str | None = None
    task: str = tasks.DEFAULT
    members: tuple[Teacher, ...] = ()
    """An ensemble's teachers (kind ``"ensemble"``); empty for one teacher."""

    @property
    def per_word(self) -> bool:
        """True for a token classifier: it scores pre-split sentences, one logit row a word."""
        return self.task == "token-classification"

    def describe(self) -> dict[str, Any]:
        out = {"kind": self.kind, "path": str(self.path.resolve()), "variant": self.variant, "task": self.task,
               "labels": self.labels, "max_length": self.max_length, "sha256": self.identity}  # fmt: skip
        return {**out, "members": [m.describe() for m in self.members]} if self.members else out


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"unreadable {path}: {e}") from None
    if not isinstance(data, dict):
        raise UserError(f"{path} does not hold a JSON object")
    return data


def _run_teacher(path: Path) -> Teacher:
    config = _read_json(path / "config.json")
    weights = path / "model.safetensors"
    if not weights.is_file():
        raise UserError(f"teacher {path} has no model.safetensors (bertdeploy loads safetensors weights only)")
    spec = tasks.from_architectures(config.get("architectures"))
    if spec is None or spec.name not in TEACHER_TASKS:
        raise UserError(
            f"teacher {path} is not a sequence or token classifier; fine-tune it with `bertdeploy train` first"
        )
    id2label = config.get("id2label") or {}
    try:
        labels = [str(id2label[str(i)]) for i in range(len(id2label))]
    except KeyError:
        raise UserError(f"teacher {path}: config.json has no complete id2label") from None
    train_config = _read_json(path / "train_config.json") if (path / "train_config.json").is_file() else {}
    max_length = int(train_config.get("max_length") or min(512, int(config.get("max_position_embeddings", 512))))
    return Teacher("run", path, labels, max_length, _bundle.sha256_file(weights), task=spec.name)


def ensemble_specs(spec: str) -> list[str]:
    """The teachers named by ``spec``: one path, or several comma-separated (a path that exists is one teacher
    even with a comma in its name)."""
    if ENSEMBLE_SEP not in spec or Path(spec).expanduser().exists():
        return [spec]
    return [part.strip() for part in spec.split(ENSEMBLE_SEP) if part.strip()]


def ensemble(members: list[Teacher]) -> Teacher:
    """One teacher standing for ``members`` (same task and label set; the first one's label order)."""
    first = members[0]
    for m in members[1:]:
        if m.task != first.task or sorted(m.labels) != sorted(first.labels):
            raise UserError(
                f"the ensemble's teachers disagree: {first.path} is a {first.task} model with labels {first.labels},"
                f" {m.path} a {m.task} model with labels {m.labels}"
            )
    identity = hashlib.sha256("\0".join(f"{m.identity}:{m.max_length}" for m in members).encode()).hexdigest()
    max_length = max(m.max_length for m in members)
    return Teacher("ensemble", first.path, first.labels, max_length, identity, None, first.task, tuple(members))


def resolve_teacher(spec: str, variant: str) -> Teacher:
    """A bundle (``bertdeploy.json``) or a run folder (``config.json`` + ``model.safetensors``), or several
    comma-separated (an ensemble: :func:`ensemble`); cheap checks only."""
    if not spec:
        raise UserError("a teacher is required (--teacher RUN_OR_BUNDLE)")
    specs = ensemble_specs(spec)
    if len(specs) > 1:
        return ensemble([resolve_teacher(one, variant) for one in specs])
    path = Path(spec).expanduser()
    if not path.is_dir():
        raise UserError(f"teacher not found: {path} (a bundle from `bertdeploy export` or a run folder)")
    if (path / _bundle.MANIFEST_NAME).is_file():
        manifest = _bundle.read_manifest(path)
        chosen = manifest.variant(variant)
        if manifest.task not in TEACHER_TASKS:
            raise UserError(f"teacher {path} is a {manifest.task} bundle; distill takes a sequence or token classifier")
        labels = list(manifest.labels)
        return Teacher("bundle", path, labels, manifest.max_length, chosen.sha256, chosen.name, manifest.task)
    if (path / "config.json").is_file():
        return _run_teacher(path)
    raise UserError(f"teacher {path} is neither a bundle ({_bundle.MANIFEST_NAME}) nor a run folder (config.json)")


def label_order(teacher_labels: list[str], labels: list[str]) -> list[int]:
    """Column ``i`` of the reordered teacher logits is the teacher's column for ``labels[i]``."""
    if sorted(teacher_labels) != sorted(labels):
        only_t = sorted(set(teacher_labels) - set(labels))
        only_d = sorted(set(labels) - set(teacher_labels))
        raise UserError(
            f"the teacher's labels differ from the data's: teacher only {only_t or '[]'}, data only {only_d or '[]'}"
            f" (teacher {teacher_labels}, data {labels})"
        )
    index = {name: i for i, name in enumerate(teacher_labels)}
    return [index[name] for name in labels]


def input_keys(inputs: list[Any]) -> list[str]:
    """One string per text or pre-split sentence (its words joined by :data:`WORD_SEP`): what cache keys hash."""
    return [x if isinstance(x, str) else WORD_SEP.join(x) for x in inputs]


def cache_key(teacher: Teacher, texts: list[Any]) -> str:
    h = hashlib.sha256(f"{teacher.identity}\0{teacher.max_length}\0{len(texts)}\0".encode())
    for text in input_keys(texts):
        h.update(text.encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()


def expected_rows(teacher: Teacher, inputs: list[Any]) -> int:
    """Logit rows of ``inputs``: one a text, or (token classification) one a word."""
    return sum(len(s) for s in inputs) if teacher.per_word else len(inputs)


def _score_bundle(teacher: Teacher, inputs: list[Any], batch_size: int) -> np.ndarray:
    from bertdeploy.runtime import load

    with load(teacher.path, variant=teacher.variant or "auto", batch_size=batch_size) as head:
        return head.word_logits(inputs) if teacher.per_word else head.logits(inputs)


def _load_run(teacher: Teacher) -> tuple[Any, Any]:
    import transformers

    auto = getattr(transformers, tasks.get(teacher.task).auto_model)
    try:
        tok = transformers.AutoTokenizer.from_pretrained(teacher.path, use_fast=True, local_files_only=True)
        model = auto.from_pretrained(teacher.path, use_safetensors=True, local_files_only=True).eval()
    except (OSError, ValueError) as e:
        raise UserError(f"cannot load the teacher {teacher.path}: {str(e).splitlines()[0]}") from None
    return tok, model


def _score_run(teacher: Teacher, inputs: list[Any], batch_size: int) -> np.ndarray:
    import torch

    from bertdeploy.runtime.tagger import first_sub_tokens

    tok, model = _load_run(teacher)
    kw = {"truncation": True, "max_length": teacher.max_length, "is_split_into_words": teacher.per_word}
    lengths = [len(ids) for ids in tok(inputs, **kw)["input_ids"]]
    order = np.argsort(lengths, kind="stable")  # length-sorted batches: little padding
    out = np.full((expected_rows(teacher, inputs), model.config.num_labels), np.nan, dtype=np.float32)
    starts = np.cumsum([0, *(len(s) for s in inputs)]) if teacher.per_word else None
    with torch.inference_mode():
        for start in range(0, len(inputs), batch_size):
            idx = order[start : start + batch_size]
            enc = tok([inputs[i] for i in idx], padding=True, return_tensors="pt", **kw)
            logits = model(**enc).logits.float().numpy()
            if starts is None:
                out[idx] = logits
                continue
            words = np.array([[-1 if w is None else w for w in enc.word_ids(j)] for j in range(len(idx))])
            rows = np.repeat(idx, words.shape[1])
            positions, at = first_sub_tokens(words.ravel(), rows, starts)
            out[at] = logits.reshape(-1, logits.shape[-1])[positions]
    return out


CACHE_GLOB = "teacher_logits-*.npy"


@contextlib.contextmanager
def caches_kept(folder: Path) -> Iterator[None]:
    """Put back the logits caches of ``folder`` if the block deletes them (a restarted run clears its partial
    folder, but the teacher's logits, keyed by a hash of teacher and texts, are still valid)."""
    kept = {p.name: p.read_bytes() for p in folder.glob(CACHE_GLOB)} if folder.is_dir() else {}
    yield
    for name, data in kept.items():
        if not (folder / name).is_file():
            folder.mkdir(parents=True, exist_ok=True)
            with _bundle.atomic_file(folder / name) as tmp:
                tmp.write_bytes(data)


def sound(logits: np.ndarray, per_word: bool) -> bool:
    """Finite logits; a per-word teacher's may also hold whole rows of NaN (words its max_length cut off). A text
    teacher's NaN row is a broken model, never a missing word."""
    if not per_word or logits.ndim != 2:
        return bool(np.isfinite(logits).all())
    return bool(np.isfinite(logits[~np.isnan(logits).all(axis=1)]).all())


def mean_probabilities(logits: list[np.ndarray]) -> np.ndarray:
    """An ensemble's logits: the log of its members' mean softmax (rows where every member is NaN stay NaN; a
    member's NaN row, a word its max_length cut off, is left out of that row's mean)."""
    from bertdeploy.runtime.classifier import softmax
    from bertdeploy.runtime.entities import TINY

    stacked = np.stack([softmax(np.asarray(x, dtype=np.float64)) for x in logits])
    count = (~np.isnan(stacked).any(axis=2)).sum(axis=0)[:, None]
    mean = np.where(count > 0, np.nansum(stacked, axis=0) / np.maximum(count, 1), np.nan)
    return np.log(np.maximum(mean, TINY))  # NaN stays NaN


def score(teacher: Teacher, texts: list[Any], batch_size: int = 64) -> np.ndarray:
    """The teacher's logits on ``texts`` (its own label order), uncached: the ONNX runtime for a bundle, PyTorch
    for a run folder, the log mean probabilities of its members for an ensemble. A token classifier takes pre-split
    sentences and gives one row a word."""
    if teacher.members:
        rows = [score(m, texts, batch_size)[:, label_order(m.labels, teacher.labels)] for m in teacher.members]
        return mean_probabilities(rows).astype(np.float32)
    scorer = _score_bundle if teacher.kind == "bundle" else _score_run
    logits = np.ascontiguousarray(scorer(teacher, texts, batch_size), dtype=np.float32)
    if not sound(logits, teacher.per_word):
        raise UserError(f"the teacher {teacher.path} produced non-finite logits")
    return logits


def teacher_logits(teacher: Teacher, texts: list[Any], cache_dir: Path, batch_size: int = 64) -> tuple[np.ndarray, str]:
    """The teacher's logits on ``texts`` (its own label order; :func:`score`) and ``"hit"`` / ``"computed"``;
    cached in ``cache_dir`` so that a resumed or restarted run does not score again."""
    path = cache_dir / CACHE_GLOB.replace("*", cache_key(teacher, texts)[:20])
    if path.is_file():
        cached = np.load(path, allow_pickle=False)
        if cached.shape == (expected_rows(teacher, texts), len(teacher.labels)):
            return cached, "hit"
    logits = score(teacher, texts, batch_size)
    cache_dir.mkdir(parents=True, exist_ok=True)
    with _bundle.atomic_file(path) as tmp, open(tmp, "wb") as f:
        np.save(f, logits, allow_pickle=False)
    return logits, "computed"
