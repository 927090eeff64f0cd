"""The task table: every task a bundle can serve, described once, under the transformers / Optimum task names.

Each stage asks this table instead of assuming "one text in, ``[batch, num_labels]`` logits out, argmax":
``train`` picks the AutoModel class and the metrics, ``export`` the Optimum task, whether the last layer may be
pruned to ``[CLS]`` and how the gate compares a variant with PyTorch, ``bench`` / ``--pick`` / the plots the primary
metric, the runtime the head that turns records into feeds and outputs into predictions (registered by name in
:mod:`bertdeploy.runtime.heads`, the way builders are registered for variants), ``serve`` the request shapes and
``package`` the output dims. Modelled on optimum-onnx's ``OnnxConfig._TASK_TO_COMMON_OUTPUTS`` (the output names
and axes below are Optimum's) and transformers' ``pipelines.SUPPORTED_TASKS``.

Standard library only: the runtime reads this table.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from bertdeploy.errors import UserError

#: the axis names used below (Optimum's)
BATCH, SEQUENCE, CHOICES, LABELS = "batch_size", "sequence_length", "num_choices", "num_labels"
#: how the gate compares a float variant with PyTorch
PARITY_RULES = ("argmax", "token_argmax", "span", "choice")
#: the stages a task may be supported in (``TaskSpec.stages``; ``get(name, stage=...)`` checks)
STAGES = ("data", "train", "distill", "export", "runtime", "predict", "serve", "bench", "package")


@dataclass(frozen=True)
class Metric:
    """The primary metric of a task: the column the gate, bench, ``--pick`` and the plots read."""

    key: str
    """Its key in score dicts (``metrics.json``, the manifest's variant metrics, bench results)."""
    label: str
    """How tables and plots title it."""
    unit: str = "points"
    """What a drop is counted in: ``--max-accuracy-drop 1`` means one point (0.01) of this metric."""


@dataclass(frozen=True)
class TaskSpec:
    """One task: what it reads, what the model outputs, how it is judged and which runtime head serves it."""

    name: str
    """The transformers / Optimum task name (the manifest's ``task``)."""
    auto_model: str
    """The transformers AutoModel class that trains and exports it."""
    architecture: str
    """The suffix of ``config.architectures`` a model of this task has (``BertForTokenClassification``)."""
    record: tuple[str, ...]
    """The fields of one training / evaluation record (the data layer's columns)."""
    input_axes: tuple[str, ...]
    """The axes of every graph input (``input_ids``, ``attention_mask``, ``token_type_ids``)."""
    outputs: Mapping[str, tuple[str, ...]]
    """Graph output name -> its axes (Optimum's names; ``num_labels`` added where the last axis is the labels)."""
    metric: Metric
    """The primary metric."""
    parity: str
    """How a float variant's agreement with PyTorch is counted (one of :data:`PARITY_RULES`)."""
    head: str
    """The runtime head that serves it (a key of ``bertdeploy.runtime.heads.HEADS``)."""
    cls_only: bool = False
    """Whether export may compute the last layer for ``[CLS]`` only (true when only ``[CLS]`` is read)."""
    labelled: bool = True
    """Whether the model has a label set (``id2label``) that the manifest lists."""
    metrics: tuple[str, ...] = ()
    """The other scalar metrics it reports (``--metric`` choices for the best checkpoint)."""
    pipeline: str = ""
    """The transformers / transformers.js pipeline name that runs it."""
    stages: tuple[str, ...] = STAGES
    """The stages that support it; the others refuse it with one line instead of half-working."""
    notes: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.parity not in PARITY_RULES:
            raise ValueError(f"{self.name}: parity must be one of {PARITY_RULES}")
        if not set(self.stages) <= set(STAGES):
            raise ValueError(f"{self.name}: stages must be among {STAGES}")
        object.__setattr__(self, "outputs", MappingProxyType(dict(self.outputs)))

    @property
    def available(self) -> bool:
        """Supported in every stage."""
        return set(self.stages) == set(STAGES)

    @property
    def output(self) -> str:
        """The first graph output (``logits`` / ``start_logits``)."""
        return next(iter(self.outputs))

    @property
    def per_token(self) -> bool:
        """True when the first output has a sequence axis (token classification, QA)."""
        return SEQUENCE in self.outputs[self.output]


_TEXT = (BATCH, SEQUENCE)
TASK_TABLE: tuple[TaskSpec, ...] = (
    TaskSpec(
        "text-classification",
        "AutoModelForSequenceClassification",
        "ForSequenceClassification",
        record=("text", "label"),
        input_axes=_TEXT,
        outputs={"logits": (BATCH, LABELS)},
        metric=Metric("accuracy", "accuracy"),
        parity="argmax",
        head="classifier",
        cls_only=True,
        metrics=("accuracy", "f1_macro", "f1_micro", "f1_weighted", "precision_macro", "recall_macro"),
        pipeline="text-classification",
    ),
    TaskSpec(
        "token-classification",
        "AutoModelForTokenClassification",
        "ForTokenClassification",
        record=("tokens", "tags"),
        input_axes=_TEXT,
        outputs={"logits": (BATCH, SEQUENCE, LABELS)},
        metric=Metric("f1", "entity F1"),
        parity="token_argmax",
        head="tagger",
        metrics=("f1", "precision", "recall", "token_accuracy"),
        pipeline="token-classification",
        stages=("data", "train", "distill", "export", "runtime", "predict", "serve", "bench", "package"),
        notes=("entity-level precision / recall / F1 as seqeval computes them (IOB2, micro over entity types)",),
    ),
    TaskSpec(
        "question-answering",
        "AutoModelForQuestionAnswering",
        "ForQuestionAnswering",
        record=("question", "context", "answers"),
        input_axes=_TEXT,
        outputs={"start_logits": (BATCH, SEQUENCE), "end_logits": (BATCH, SEQUENCE)},
        metric=Metric("f1", "F1"),
        parity="span",
        head="reader",
        labelled=False,
        metrics=("f1", "exact_match"),
        pipeline="question-answering",
        stages=("data", "train", "export", "runtime", "predict", "serve", "bench", "package"),
    ),
    TaskSpec(
        "multiple-choice",
        "AutoModelForMultipleChoice",
        "ForMultipleChoice",
        record=("question", "choices", "label"),
        input_axes=(BATCH, CHOICES, SEQUENCE),
        outputs={"logits": (BATCH, CHOICES)},
        metric=Metric("accuracy", "accuracy"),
        parity="choice",
        head="chooser",
        labelled=False,
        metrics=("accuracy",),
        stages=("data", "train", "export", "runtime", "predict", "serve", "bench", "package"),
    ),
)

TASKS: Mapping[str, TaskSpec] = MappingProxyType({t.name: t for t in TASK_TABLE})
NAMES: tuple[str, ...] = tuple(TASKS)
#: what a manifest, run folder or config without a task means (everything written before tasks existed)
DEFAULT = "text-classification"
#: tasks every stage supports today
AVAILABLE: tuple[str, ...] = tuple(t.name for t in TASK_TABLE if t.available)


def supported(stage: str) -> tuple[str, ...]:
    """The tasks ``stage`` (one of :data:`STAGES`) supports."""
    return tuple(t.name for t in TASK_TABLE if stage in t.stages)


def _stage_key(stage: str) -> str:
    """ "the runtime" -> "runtime", "package triton" -> "package": the :data:`STAGES` key of a stage's display name."""
    words = stage.removeprefix("the ").split()
    return words[0] if words else ""


def get(name: str | None, *, stage: str = "") -> TaskSpec:
    """The spec of ``name`` (None: :data:`DEFAULT`); :class:`UserError` for an unknown task, or one that ``stage``
    (a :data:`STAGES` key or a display name: "export", "the runtime", "package triton" ...) does not support yet."""
    if name is None:
        name = DEFAULT
    spec = TASKS.get(name) if isinstance(name, str) else None
    if spec is None:
        raise UserError(f"unknown task {name!r}; choose from {', '.join(NAMES)}")
    key = _stage_key(stage)
    if stage and key in STAGES and key not in spec.stages:
        where = stage if stage.startswith("the ") or key == "runtime" else f"`bertdeploy {stage}`"
        where = "the runtime" if key == "runtime" else where
        raise UserError(f"task {name!r} is not supported by {where} yet; it works in: {', '.join(spec.stages)}")
    return spec


def from_architectures(architectures: list[str] | None) -> TaskSpec | None:
    """The task whose architecture suffix one of ``architectures`` (an HF ``config.architectures``) ends with."""
    for arch in architectures or []:
        for spec in TASK_TABLE:
            if isinstance(arch, str) and arch.endswith(spec.architecture):
                return spec
    return None
