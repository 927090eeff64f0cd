"""The multiple-choice head: ``load(bundle)`` of a multiple-choice bundle -> :class:`Chooser`.

Each record is a question and its choices; every (question, choice) pair is tokenized as training tokenizes it
(``longest_first`` truncation to ``max_length``), a question's pairs are padded together and run as one
``[questions, choices, tokens]`` batch (length-sorted, token budget counted over all choices), and the answer is the
choice with the highest softmax probability.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from bertdeploy.errors import UserError
from bertdeploy.runtime.batching import Batch, make_feed, plan
from bertdeploy.runtime.classifier import softmax
from bertdeploy.runtime.heads import register
from bertdeploy.runtime.predictor import SORT_WINDOW, Predictor
from bertdeploy.runtime.tokenize import PairEncoded, PairEncoder

__all__ = ["Choice", "ChoiceEncoded", "Chooser", "as_choice_records", "choice_feed"]


@dataclass(frozen=True, slots=True)
class Choice:
    """The chosen answer: ``label`` is the index of the choice, ``score`` its probability."""

    label: int
    score: float

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "score": self.score}


@dataclass(frozen=True)
class ChoiceEncoded:
    """The pairs of ``n`` questions with ``width`` choices each: question ``i``'s pairs are rows
    ``i * width .. (i + 1) * width - 1`` of ``pairs``."""

    pairs: PairEncoded
    width: int

    def __len__(self) -> int:
        return len(self.pairs.lengths) // self.width if self.width else 0

    @property
    def lengths(self) -> np.ndarray:
        """Per question, its longest pair (what its batch row is padded to)."""
        return self.pairs.lengths.reshape(-1, self.width).max(axis=1) if len(self) else np.zeros(0, np.int64)

    @property
    def truncated(self) -> int:
        return self.pairs.truncated


def choice_feed(
    encoded: PairEncoded, index: np.ndarray, width: int, padded: int, specs: dict[str, type], pad_id: int
) -> dict[str, np.ndarray]:
    """The ``[len(index), width, padded]`` inputs of the questions ``index`` (their pairs padded together)."""
    rows = (index[:, None] * width + np.arange(width)[None, :]).ravel()
    flat = make_feed(encoded, rows, padded, specs, pad_id)
    return {name: value.reshape(len(index), width, padded) for name, value in flat.items()}


@register("chooser")
class Chooser(Predictor):
    """A multiple-choice bundle variant: the best choice of each question and its probability. Thread-safe like
    every :class:`~bertdeploy.runtime.predictor.Predictor`."""

    _encoder: PairEncoder

    @classmethod
    def make_encoder(cls, tokenizer: str | Path, max_length: int) -> PairEncoder:
        return PairEncoder(tokenizer, max_length, windows=False, offsets=False)  # ids and types only

    def encode(self, records: Any) -> ChoiceEncoded:  # type: ignore[override]
        questions, choices = as_choice_records(records)
        width = len(choices[0]) if choices else 0
        pairs = [(q, c) for q, cs in zip(questions, choices) for c in cs]
        return ChoiceEncoded(self._encoder.encode_pairs(pairs), width)

    def _iter_batches(self, encoded: ChoiceEncoded) -> Iterator[Batch]:  # type: ignore[override]
        policy = self.policy
        if self.streams > 1 and len(encoded) > 1:
            policy = replace(policy, batch_size=min(policy.batch_size, max(1, math.ceil(len(encoded) / self.streams))))
        budget = replace(policy, max_tokens=max(1, policy.max_tokens // max(encoded.width, 1)))
        for index, padded in plan(encoded.lengths, budget, self.max_length):
            feed = choice_feed(encoded.pairs, index, encoded.width, padded, self._specs, self._encoder.pad_id)
            yield Batch(index=index, feed=feed)

    def forward(self, encoded: ChoiceEncoded) -> np.ndarray:  # type: ignore[override]
        """Logits ``[questions, choices]`` in the caller's order."""
        out = np.zeros((len(encoded), encoded.width), dtype=np.float32)

        def store(batch: Batch, logits: np.ndarray) -> None:
            out[batch.index] = logits

        self.run_batches(encoded, store)  # type: ignore[arg-type]
        return out

    def concat(self, parts: list[np.ndarray]) -> np.ndarray:
        if len({p.shape[1] for p in parts}) > 1:
            raise UserError("every question of one call must have the same number of choices")
        return super().concat(parts)

    def decode(self, outputs: np.ndarray, **params: Any) -> list[Choice]:  # type: ignore[override]
        if params:
            raise UserError(f"unknown multiple-choice option(s): {', '.join(sorted(params))}")
        proba = softmax(np.array(outputs, dtype=np.float32)) if len(outputs) else outputs
        best = proba.argmax(axis=1) if len(proba) else np.zeros(0, np.int64)
        return [Choice(int(b), float(p[b])) for b, p in zip(best.tolist(), proba)]

    def logits(self, records: Any) -> np.ndarray:
        questions, choices = as_choice_records(records)
        recs = list(zip(questions, choices))
        parts = [self.forward(self.encode(recs[i : i + SORT_WINDOW])) for i in range(0, len(recs), SORT_WINDOW)]
        return self.concat(parts) if parts else np.zeros((0, 0), dtype=np.float32)

    def predict(self, records: Any) -> list[Choice]:
        """The chosen answer of each ``{"question", "choices"}`` record (or ``(question, choices)`` pair)."""
        return self.decode(self.logits(records))


def as_choice_records(records: Any) -> tuple[list[str], list[list[str]]]:
    """(questions, choices) from ``{"question", "choices"}`` dicts or ``(question, choices)`` pairs; every record
    must have the same number (>= 2) of non-empty choices."""
    if isinstance(records, (dict, tuple)):
        records = [records]
    if isinstance(records, (str, bytes)) or not isinstance(records, Sequence):
        raise UserError("records must be {'question', 'choices'} dicts or (question, choices) pairs")
    questions, choices = [], []
    for i, record in enumerate(records):
        if isinstance(record, dict):
            if "question" not in record or "choices" not in record:
                raise UserError(f"record #{i} needs 'question' and 'choices'")
            q, cs = record["question"], record["choices"]
        elif isinstance(record, (tuple, list)) and len(record) == 2:
            q, cs = record
        else:
            raise UserError(f"record #{i} must be a {{'question', 'choices'}} dict or a (question, choices) pair")
        if not isinstance(q, str) or not q.strip():
            raise UserError(f"record #{i}: the question must be a non-empty string")
        if isinstance(cs, str) or not isinstance(cs, Sequence) or len(cs) < 2:
            raise UserError(f"record #{i}: 'choices' must be a list of at least 2 strings")
        if not all(isinstance(c, str) and c.strip() for c in cs):
            raise UserError(f"record #{i}: every choice must be a non-empty string")
        if choices and len(cs) != len(choices[0]):
            raise UserError(f"record #{i} has {len(cs)} choices, record #0 has {len(choices[0])}")
        questions.append(q)
        choices.append(list(cs))
    return questions, choices
