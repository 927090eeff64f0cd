"""The text-classification head: ``load(bundle)`` of a text-classification bundle -> :class:`Classifier`:
tokenize, batch, run, restore order, softmax."""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bertdeploy.errors import UserError
from bertdeploy.runtime.heads import register
from bertdeploy.runtime.predictor import SORT_WINDOW, Predictor, as_texts, check_texts
from bertdeploy.runtime.tokenize import Encoded

__all__ = ["Classifier", "Prediction", "check_texts", "softmax"]


@dataclass(frozen=True, slots=True)
class Prediction:
    label: str
    score: float


@register("classifier")
class Classifier(Predictor):
    """A text-classification bundle variant: logits ``[n, num_labels]``, softmax, the best label (or top k).
    Thread-safe like every :class:`~bertdeploy.runtime.predictor.Predictor`."""

    def forward(self, encoded: Encoded) -> np.ndarray:
        """Logits ``[n, num_labels]`` for already-encoded texts, in their original order."""
        out = np.empty((len(encoded), len(self.labels)), dtype=np.float32)

        def store(batch: Any, logits: np.ndarray) -> None:
            out[batch.index] = logits

        self.run_batches(encoded, store)
        if self.check is not None:  # a checked variant: near ties again on the check file
            self.check.apply(out, encoded, self.policy, self.max_length, self._encoder.pad_id)
        return out

    def logits_encoded(self, encoded: Encoded) -> np.ndarray:
        """Logits for already-encoded texts, in their original order (:meth:`forward`)."""
        return self.forward(encoded)

    def decode(self, outputs: np.ndarray, top_k: int = 1, **params: Any) -> list[Any]:
        """Predictions from logits (see :meth:`predict`)."""
        if params:
            raise UserError(f"unknown text-classification option(s): {', '.join(sorted(params))}; known: top_k")
        return self.to_predictions(softmax(np.array(outputs, dtype=np.float32)), top_k)

    # -- public predictions ----------------------------------------------------------------------------
    def logits(self, texts: Sequence[str]) -> np.ndarray:
        """Raw logits ``[n, num_labels]`` in the caller's order."""
        texts = as_texts(texts)
        parts = [self.forward(self.encode(texts[i : i + SORT_WINDOW])) for i in range(0, len(texts), SORT_WINDOW)]
        return np.concatenate(parts) if parts else np.empty((0, len(self.labels)), dtype=np.float32)

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Softmax probabilities ``[n, num_labels]``; columns follow :attr:`labels`."""
        return softmax(self.logits(texts))

    def predict(self, texts: Sequence[str], top_k: int = 1) -> list[Prediction] | list[list[Prediction]]:
        """One :class:`Prediction` per text (``top_k > 1``: a best-first list of ``top_k`` per text)."""
        return self.to_predictions(self.predict_proba(texts), top_k)

    def to_predictions(self, proba: np.ndarray, top_k: int = 1) -> list[Prediction] | list[list[Prediction]]:
        if not isinstance(top_k, numbers.Integral) or isinstance(top_k, bool) or top_k < 1:
            raise UserError(f"top_k must be an integer >= 1, got {top_k!r}")
        top_k = int(top_k)
        labels = self.labels
        if top_k == 1:
            best = proba.argmax(axis=1)
            scores = proba[np.arange(len(best)), best]
            return [Prediction(labels[i], s) for i, s in zip(best.tolist(), scores.tolist())]
        k = min(top_k, len(labels))
        order = np.argsort(-proba, axis=1, kind="stable")[:, :k]
        top = np.take_along_axis(proba, order, axis=1)
        return [[Prediction(labels[i], s) for i, s in zip(idx, sc)] for idx, sc in zip(order.tolist(), top.tolist())]


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z
