"""The runtime heads, registered by name: the task table (:mod:`bertdeploy.tasks`) names the head that serves each
task, the way the variant table names each variant's builder. ``load(bundle)`` returns the head of the bundle's
task: a :class:`~bertdeploy.runtime.classifier.Classifier` for text classification, a
:class:`~bertdeploy.runtime.tagger.Tagger` for token classification.

A head is a :class:`~bertdeploy.runtime.predictor.Predictor` subclass registered with ``@register(name)``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from bertdeploy import tasks
from bertdeploy.errors import UserError

#: head name -> Predictor subclass (filled by ``@register`` when the head's module is imported)
HEADS: dict[str, type] = {}
#: the modules that register the built-in heads
_MODULES = (
    "bertdeploy.runtime.classifier",
    "bertdeploy.runtime.tagger",
    "bertdeploy.runtime.reader",
    "bertdeploy.runtime.chooser",
)


def register(name: str) -> Callable[[type], type]:
    """Register a :class:`~bertdeploy.runtime.predictor.Predictor` subclass as the head ``name``."""

    def add(cls: type) -> type:
        cls.head = name  # type: ignore[attr-defined]
        HEADS[name] = cls
        return cls

    return add


def head_for(task: str) -> Any:
    """The head class serving ``task`` (a :class:`UserError` when the task has none in this runtime yet)."""
    spec = tasks.get(task, stage="the runtime")
    for module in _MODULES:
        importlib.import_module(module)
    if spec.head not in HEADS:
        raise UserError(f"task {task!r} has no runtime head ({spec.head!r}) in this bertdeploy")
    return HEADS[spec.head]
