"""What a bench TARGET is: a bundle (``bertdeploy.json``), a training run / HF model folder (``config.json`` +
safetensors), or a model preset name (random weights: speed only, rows say ``untrained``); each of one task of the
task table (the bundle's, the run's, text classification for presets). Plus the records each target is scored and
timed on (texts; for the other tasks see :mod:`bertdeploy.benchmark.evaldata`). Resolution is cheap (reads JSON
files only); building presets and exporting temporary bundles is in :mod:`bertdeploy.benchmark.materialize`."""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bertdeploy import tasks
from bertdeploy.bundle import MANIFEST_NAME, read_manifest
from bertdeploy.errors import UserError

DEFAULT_MAX_LENGTH = 128
SYNTHETIC_EVAL = 32
"""Synthetic texts used for agreement with PyTorch (no labels, all full length: a few suffice)."""
SOURCE_KEYS = ("source_model", "run_dir", "source", "model_dir")
_WORDS = (
    "i feel the day was long but the people around me made it good and i am thankful for that "
    "this movie is slow and the story never goes anywhere though the music is lovely at times "
    "we waited an hour for food that arrived cold so i will not be coming back here again soon"
).split()


@dataclass
class Target:
    spec: str
    """What the user wrote."""
    name: str
    """Short label used in rows and file names."""
    kind: str
    """``bundle`` | ``run`` | ``preset``."""
    labels: list[str]
    max_length: int
    trained: bool
    """False for presets and heads never fine-tuned: rows carry no accuracy."""
    hf_dir: Path | None = None
    """PyTorch model + tokenizer folder (torch / pipeline / ortmodel backends)."""
    bundle: Path | None = None
    """bertdeploy bundle (bertdeploy / ortmodel backends)."""
    data: str | None = None
    text_column: str = "text"
    label_column: str = "label"
    notes: list[str] = field(default_factory=list)
    task: str = tasks.DEFAULT
    """The task of the model (:mod:`bertdeploy.tasks`): what its records and predictions are."""

    @property
    def model_dir(self) -> Path | None:
        """A folder holding config.json and tokenizer.json for this target (bundle first)."""
        return self.bundle or self.hf_dir

    def model_config(self) -> dict[str, Any]:
        if self.model_dir is None:
            return {}
        return json.loads((self.model_dir / "config.json").read_text(encoding="utf-8"))

    def tokenizer_file(self) -> Path:
        assert self.model_dir is not None
        return self.model_dir / "tokenizer.json"


@dataclass
class EvalSet:
    """Records one target is scored on (``label_ids`` None: no accuracy) and the sample the timed loops cycle.
    Records are texts for text and token classification, ``[question, context]`` pairs for question answering,
    ``{"question", "choices"}`` for multiple choice; ``label_ids`` are the task's gold answers
    (:mod:`bertdeploy.benchmark.evaldata`)."""

    texts: list[Any]
    label_ids: list[Any] | None
    split: str
    timing_texts: list[Any]
    source: str


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "target"


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise UserError(f"unreadable {path}: {e}") from None


def _labels_of(config: dict[str, Any]) -> list[str]:
    id2label = config.get("id2label") or {}
    return [str(id2label[k]) for k in sorted(id2label, key=lambda k: int(k))] or ["LABEL_0", "LABEL_1"]


def _has_weights(folder: Path) -> bool:
    return any(folder.glob("*.safetensors"))


def _bundle_source(raw: dict[str, Any], bundle: Path) -> Path | None:
    """The PyTorch run a bundle was exported from, when the manifest records it and it still exists."""
    for key in SOURCE_KEYS:
        value = raw.get(key)
        if isinstance(value, dict):
            value = next((value[k] for k in ("run_dir", "path", "model") if isinstance(value.get(k), str)), None)
        if isinstance(value, str):
            for p in (Path(value), bundle / value):
                if p.is_dir() and (p / "config.json").is_file() and _has_weights(p):
                    return p.resolve()
    return None


def _eval_info(raw: dict[str, Any]) -> dict[str, Any]:
    for key in ("eval", "evaluation", "data"):
        if isinstance(raw.get(key), dict):
            return raw[key]
        if isinstance(raw.get(key), str):
            return {"path": raw[key]}
    return {}


def resolve_target(spec: str, max_length: int | None = None) -> Target:
    """Classify ``spec``; raise one clear :class:`UserError` when it is neither bundle, run nor preset."""
    path = Path(spec).expanduser()
    if path.is_dir() and (path / MANIFEST_NAME).is_file():
        m = read_manifest(path)
        source = _bundle_source(m.raw, path)
        ev = _eval_info(m.raw)
        t = Target(
            spec=spec,
            name=_slug(path.resolve().name),
            kind="bundle",
            labels=m.labels,
            max_length=max_length or m.max_length,
            trained=bool(m.raw.get("trained", True)),
            hf_dir=source,
            bundle=path.resolve(),
            data=ev.get("path") or ev.get("data"),
            text_column=ev.get("text_column", "text"),
            label_column=ev.get("label_column", "label"),
            task=m.task,
        )
        if source is None:
            t.notes.append("bundle records no PyTorch source model: torch / pipeline need the run dir as a target")
        return t
    if path.is_dir() and (path / "config.json").is_file():
        if not _has_weights(path):
            raise UserError(f"{path} has config.json but no safetensors weights (bertdeploy never unpickles .bin)")
        config = _read_json(path / "config.json")
        tc = _read_json(path / "train_config.json") if (path / "train_config.json").is_file() else {}
        found = tasks.from_architectures(config.get("architectures"))
        task = tasks.get(tc.get("task") or (found.name if found else None))
        return Target(
            spec=spec,
            name=_slug(path.resolve().name),
            kind="run",
            labels=_labels_of(config) if task.labelled else [],
            max_length=max_length or int(tc.get("max_length") or DEFAULT_MAX_LENGTH),
            trained=bool(tc) or found is not None,
            hf_dir=path.resolve(),
            data=tc.get("data"),
            text_column=tc.get("text_column", "text"),
            label_column=tc.get("label_column", "label"),
            task=task.name,
        )
    from bertdeploy.training.models import PRESETS

    if spec in PRESETS:
        return Target(
            spec=spec, name=spec, kind="preset", labels=[], max_length=max_length or DEFAULT_MAX_LENGTH, trained=False
        )
    if path.exists():
        raise UserError(
            f"target {spec!r} is neither a bundle ({MANIFEST_NAME}) nor a training run / model folder "
            "(config.json + safetensors)"
        )
    raise UserError(
        f"target {spec!r} is not a bundle, a training run or a model preset (presets: {', '.join(PRESETS)})"
    )


def synthetic_texts(n: int, words: int, seed: int = 0) -> list[str]:
    """``n`` English-like texts of ``words`` words (truncated to max_length tokens, every row is full length)."""
    rng = random.Random(seed)
    return [" ".join(rng.choice(_WORDS) for _ in range(words)) for _ in range(n)]


def load_eval_set(
    target: Target,
    data: str | None,
    text_column: str | None,
    label_column: str | None,
    timing_texts: int,
    eval_limit: int | None,
    seed: int,
) -> EvalSet:
    """The evaluation split (labels mapped onto the target's) and the seeded timing sample.

    A preset takes its label set from the data (``target.labels`` is filled in); without data it is timed on
    synthetic full-length texts. Data of another task than the target's is one :class:`UserError`.
    """
    from bertdeploy.benchmark.evaldata import check_data_task, task_records
    from bertdeploy.data import DataSpec, load_data, load_eval_split

    path = data or target.data
    tcol = text_column or target.text_column
    lcol = label_column or target.label_column
    rng = random.Random(seed)
    if path is None:
        if target.trained or target.task != tasks.DEFAULT:
            raise UserError(f"{target.spec}: no evaluation data: pass --data (needed for accuracy)")
        texts = synthetic_texts(timing_texts, words=target.max_length, seed=seed)
        if not target.labels:
            target.labels = ["LABEL_0", "LABEL_1"]
        scored = texts[: min(eval_limit or SYNTHETIC_EVAL, SYNTHETIC_EVAL)]
        return EvalSet(scored, None, "synthetic", texts, f"synthetic ({target.max_length} tokens)")
    check_data_task(str(path), target.task, target.spec)
    if target.task != tasks.DEFAULT:
        texts, ids, split = task_records(target.task, str(path), target.labels, tcol, lcol)
    elif target.kind == "preset":
        loaded = load_data(DataSpec(path=str(path), text_column=tcol, label_column=lcol, unseen_labels="keep"))
        target.labels = loaded.labels
        split = loaded.eval_split if loaded.eval_split in loaded.splits else next(iter(loaded.splits))
        texts, ids = loaded.splits[split]["text"], loaded.splits[split]["label"]
    else:
        texts, ids, split = load_eval_split(str(path), target.labels, text_column=tcol, label_column=lcol)
    if eval_limit and len(texts) > eval_limit:
        keep = sorted(rng.sample(range(len(texts)), eval_limit))
        texts, ids = [texts[i] for i in keep], [ids[i] for i in keep]
    sample = rng.sample(range(len(texts)), min(timing_texts, len(texts)))
    return EvalSet(
        texts=list(texts),
        label_ids=list(ids) if target.trained else None,
        split=split,
        timing_texts=[texts[i] for i in sample],
        source=str(path),
    )
