"""How each task plugs into training: its tokenization, collator, metrics and the metrics that may pick the best
checkpoint, registered by the task table's name (:mod:`bertdeploy.tasks`).

A task the table lists under the ``train`` stage has an entry here; adding one (question answering, multiple
choice) means writing its module (``task_<name>.py``) and one :class:`TaskTraining` line in :data:`REGISTRY`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bertdeploy import tasks
from bertdeploy.errors import UserError


@dataclass(frozen=True)
class TaskTraining:
    """The training side of one task."""

    encode: Callable[..., Any]
    """``(data, tokenizer, max_length, padding, config) -> DatasetDict`` with a ``labels``/``label`` column."""
    collator: Callable[[Any], Any]
    """``tokenizer -> data collator`` (dynamic padding of a batch)."""
    scorer: Callable[[Any, Any, str], Callable[[Any, Any], dict[str, Any]]]
    """``(data, tokenized datasets, split) -> ((predictions, label_ids) -> metrics)``: the metrics of ``split``
    (scalars plus per-class / per-type detail), given the model's outputs on its rows in dataset order."""
    best_metrics: tuple[str, ...]
    """The metric names ``--metric`` may pick the best checkpoint by (``loss`` is always allowed)."""
    default_metric: str
    """What picks the best checkpoint when ``--metric`` is left at its text-classification default."""


def tokenize(data, tokenizer, max_length: int, padding: str, config: Any = None):
    """Tokenized ``DatasetDict`` of text-classification data (columns input_ids, attention_mask, [token_type_ids],
    label); other tasks encode in their ``task_*`` module (:mod:`bertdeploy.training.task_setup`)."""
    pad = "max_length" if padding == "static" else False

    def encode(batch):
        return tokenizer(batch["text"], truncation=True, max_length=max_length, padding=pad)

    return data.to_datasets().map(encode, batched=True, remove_columns=["text"], desc="tokenize")


def _text_collator(tokenizer):
    from transformers import DataCollatorWithPadding

    return DataCollatorWithPadding(tokenizer)


def _text_scorer(data, datasets, split: str):
    import numpy as np

    from bertdeploy.metrics import classification_metrics

    return lambda predictions, label_ids: classification_metrics(label_ids, np.argmax(predictions, -1), data.labels)


def _token_encode(data, tokenizer, max_length: int, padding: str, config: Any = None):
    from bertdeploy.training.task_tokens import encode

    return encode(data, tokenizer, max_length, padding, label_all_tokens=bool(getattr(config, "label_all_tokens", 0)))


def _token_collator(tokenizer):
    from transformers import DataCollatorForTokenClassification

    return DataCollatorForTokenClassification(tokenizer)


def _token_scorer(data, datasets, split: str):
    from bertdeploy.training.task_tokens import data_prior, scores

    prior = data_prior(data)
    return lambda predictions, label_ids: scores(predictions, label_ids, data.labels, prior)


def _lazy(name: str):
    """A function of :mod:`bertdeploy.training.task_qa`, imported when called."""

    def call(*args, **kwargs):
        from bertdeploy.training import task_qa

        return getattr(task_qa, name)(*args, **kwargs)

    return call


def _static_collator(tokenizer):
    from transformers import default_data_collator

    return default_data_collator


_TEXT_METRICS = ("accuracy", "f1_macro", "f1_micro", "f1_weighted", "precision_macro", "recall_macro")

REGISTRY: dict[str, TaskTraining] = {
    "text-classification": TaskTraining(tokenize, _text_collator, _text_scorer, _TEXT_METRICS, "f1_macro"),
    "token-classification": TaskTraining(
        _token_encode, _token_collator, _token_scorer, ("f1", "precision", "recall", "token_accuracy"), "f1"
    ),
    "question-answering": TaskTraining(
        _lazy("encode_qa"), _text_collator, _lazy("qa_scorer"), ("f1", "exact_match"), "f1"
    ),
    "multiple-choice": TaskTraining(
        _lazy("encode_mc"), _static_collator, _lazy("mc_scorer"), ("accuracy",), "accuracy"
    ),
}

#: the text-classification default of ``--metric`` (a token task reads it as "the task's own default")
TEXT_DEFAULT_METRIC = "f1_macro"


def get(task: str, stage: str = "train") -> TaskTraining:
    """The training side of ``task``; one :class:`UserError` line when the table (or this registry) does not
    support it in ``stage`` (``train`` | ``distill``)."""
    tasks.get(task, stage=stage)
    entry = REGISTRY.get(task)
    if entry is None:
        raise UserError(f"task {task!r} is not supported by `bertdeploy {stage}` yet")
    return entry


def best_metric(task: str, metric: str) -> str:
    """The metric that picks the best checkpoint for ``task`` given ``--metric``: the task's default when it was
    left at the text-classification default; a metric the task does not compute is one error line."""
    entry = get(task)
    if metric == "loss" or metric in entry.best_metrics:
        return metric
    if metric == TEXT_DEFAULT_METRIC:
        return entry.default_metric
    raise UserError(f"--metric {metric} is not a {task} metric; choose from {', '.join((*entry.best_metrics, 'loss'))}")
