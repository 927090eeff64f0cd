"""The teacher of ``bertdeploy distill``: a bundle (scored with our ONNX runtime, no torch model in memory) or a
run folder (scored with PyTorch), its labels, and its logits on a list of texts, computed once and cached.

Each model reads the texts with ITS OWN tokenizer and ``max_length``: a teacher whose vocabulary differs from the
student's is no problem, the student's inputs are tokenized separately. The cache is one ``.npy`` file (loaded
with ``allow_pickle=False``) named by a hash of the teacher's weights, its max_length and the texts.
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
from bertdeploy.errors import UserError


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

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "path": str(self.path.resolve()), "variant": self.variant,
                "labels": self.labels, "max_length": self.max_length, "sha256": self.identity}  # fmt: skip


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
    if not any(str(a).endswith("ForSequenceClassification") for a in config.get("architectures") or []):
        raise UserError(f"teacher {path} is not a sequence classifier; fine-tune it with `bertdeploy train` first")
    id2label = config.get("id2label") or {}
    try:
        labels = [str(id2label[str(i)]) for i in range(len(id2label))]
    except KeyError:
        raise UserError(f"teacher {path}: config.json has no complete id2label") from None
    train_config = _read_json(path / "train_config.json") if (path / "train_config.json").is_file() else {}
    max_length = int(train_config.get("max_length") or min(512, int(config.get("max_position_embeddings", 512))))
    return Teacher("run", path, labels, max_length, _bundle.sha256_file(weights))


def resolve_teacher(spec: str, variant: str) -> Teacher:
    """A bundle (``bertdeploy.json``) or a run folder (``config.json`` + ``model.safetensors``); cheap checks only."""
    if not spec:
        raise UserError("a teacher is required (--teacher RUN_OR_BUNDLE)")
    path = Path(spec).expanduser()
    if not path.is_dir():
        raise UserError(f"teacher not found: {path} (a bundle from `bertdeploy export` or a run folder)")
    if (path / _bundle.MANIFEST_NAME).is_file():
        manifest = _bundle.read_manifest(path)
        chosen = manifest.variant(variant)
        return Teacher("bundle", path, list(manifest.labels), manifest.max_length, chosen.sha256, chosen.name)
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


def cache_key(teacher: Teacher, texts: list[str]) -> str:
    h = hashlib.sha256(f"{teacher.identity}\0{teacher.max_length}\0{len(texts)}\0".encode())
    for text in texts:
        h.update(text.encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()


def _score_bundle(teacher: Teacher, texts: list[str], batch_size: int) -> np.ndarray:
    from bertdeploy.runtime import load

    with load(teacher.path, variant=teacher.variant or "auto", batch_size=batch_size) as clf:
        return clf.logits(texts)


def _score_run(teacher: Teacher, texts: list[str], batch_size: int) -> np.ndarray:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(teacher.path, use_fast=True, local_files_only=True)
        model = AutoModelForSequenceClassification.from_pretrained(
            teacher.path, use_safetensors=True, local_files_only=True
        ).eval()
    except (OSError, ValueError) as e:
        raise UserError(f"cannot load the teacher {teacher.path}: {str(e).splitlines()[0]}") from None
    lengths = [len(ids) for ids in tok(texts, truncation=True, max_length=teacher.max_length)["input_ids"]]
    order = np.argsort(lengths, kind="stable")  # length-sorted batches: little padding
    out = np.empty((len(texts), model.config.num_labels), dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            idx = order[start : start + batch_size]
            enc = tok([texts[i] for i in idx], truncation=True, max_length=teacher.max_length, padding=True,
                      return_tensors="pt")  # fmt: skip
            out[idx] = model(**enc).logits.float().numpy()
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


def score(teacher: Teacher, texts: list[str], batch_size: int = 64) -> np.ndarray:
    """The teacher's logits on ``texts`` (its own label order), uncached: the ONNX runtime for a bundle, PyTorch
    for a run folder."""
    scorer = _score_bundle if teacher.kind == "bundle" else _score_run
    logits = np.ascontiguousarray(scorer(teacher, texts, batch_size), dtype=np.float32)
    if not np.isfinite(logits).all():
        raise UserError(f"the teacher {teacher.path} produced non-finite logits")
    return logits


def teacher_logits(teacher: Teacher, texts: list[str], cache_dir: Path, batch_size: int = 64) -> tuple[np.ndarray, str]:
    """The teacher's logits on ``texts`` (its own label order) and ``"hit"`` / ``"computed"``; cached in
    ``cache_dir`` so that a resumed or restarted run does not score again."""
    path = cache_dir / CACHE_GLOB.replace("*", cache_key(teacher, texts)[:20])
    if path.is_file():
        cached = np.load(path, allow_pickle=False)
        if cached.shape == (len(texts), len(teacher.labels)):
            return cached, "hit"
    logits = score(teacher, texts, batch_size)
    cache_dir.mkdir(parents=True, exist_ok=True)
    with _bundle.atomic_file(path) as tmp, open(tmp, "wb") as f:
        np.save(f, logits, allow_pickle=False)
    return logits, "computed"
