"""The extractive question-answering head: ``load(bundle)`` of a question-answering bundle -> :class:`Reader`.

Each (question, context) pair is tokenized as the transformers question-answering pipeline does (question first,
the context cut into windows of ``max_length`` tokens overlapping by ``doc_stride``), every window of every
question is run in the same length-sorted token-budget batches as the other heads, and the answers come from
:mod:`bertdeploy.runtime.spans` (n-best over all windows, offsets into the context).
"""

from __future__ import annotations

import functools
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bertdeploy.errors import RecordError, UserError
from bertdeploy.runtime.heads import register
from bertdeploy.runtime.predictor import SORT_WINDOW, Predictor
from bertdeploy.runtime.spans import MAX_ANSWER_LEN, Answer, Window, answers
from bertdeploy.runtime.tokenize import PairEncoded, PairEncoder

__all__ = ["Answer", "Reader", "SpanLogits", "as_pairs"]


@dataclass(frozen=True)
class SpanLogits:
    """Start / end logits of the windows of ``n`` questions: question ``i``'s windows are rows
    ``row_bounds[i]:row_bounds[i + 1]``; a row's tokens are ``offsets[r]:offsets[r] + lengths[r]`` of the flat
    per-token arrays."""

    contexts: tuple[str, ...]
    row_bounds: np.ndarray
    offsets: np.ndarray
    lengths: np.ndarray
    start: np.ndarray
    end: np.ndarray
    context: np.ndarray
    spans: np.ndarray
    words: np.ndarray

    def __len__(self) -> int:
        return len(self.contexts)

    def __getitem__(self, key: slice) -> SpanLogits:
        if not isinstance(key, slice) or key.step not in (None, 1):
            raise TypeError("SpanLogits is sliced by a contiguous range of questions")
        a, b, _ = key.indices(len(self.contexts))
        b = max(a, b)
        r0, r1 = int(self.row_bounds[a]), int(self.row_bounds[b])
        t0 = int(self.offsets[r0]) if r1 > r0 else 0
        t1 = int(self.offsets[r1 - 1] + self.lengths[r1 - 1]) if r1 > r0 else 0
        tokens = slice(t0, t1)
        return SpanLogits(self.contexts[a:b], self.row_bounds[a : b + 1] - r0, self.offsets[r0:r1] - t0,
                          self.lengths[r0:r1], self.start[tokens], self.end[tokens], self.context[tokens],
                          self.spans[tokens], self.words[tokens])  # fmt: skip

    def windows(self, i: int) -> list[Window]:
        out = []
        for r in range(int(self.row_bounds[i]), int(self.row_bounds[i + 1])):
            t = slice(int(self.offsets[r]), int(self.offsets[r] + self.lengths[r]))
            out.append(Window(self.start[t], self.end[t], self.context[t], self.spans[t], self.words[t]))
        return out

    @classmethod
    def concat(cls, parts: list[SpanLogits]) -> SpanLogits:
        rows = np.cumsum([0, *(len(p.lengths) for p in parts)])
        tokens = np.cumsum([0, *(len(p.start) for p in parts)])
        bounds = np.concatenate([[0], *(p.row_bounds[1:] + r for p, r in zip(parts, rows[:-1]))])
        cat = np.concatenate
        return cls(tuple(c for p in parts for c in p.contexts), bounds.astype(np.int64),
                   cat([p.offsets + t for p, t in zip(parts, tokens[:-1])]), cat([p.lengths for p in parts]),
                   cat([p.start for p in parts]), cat([p.end for p in parts]), cat([p.context for p in parts]),
                   cat([p.spans for p in parts]), cat([p.words for p in parts]))  # fmt: skip


def span_logits(encoded: PairEncoded, logits: np.ndarray) -> SpanLogits:
    """:class:`SpanLogits` from a pair encoding and its flat per-token ``[start, end]`` logits ``[tokens, 2]``."""
    counts = np.bincount(encoded.text_of_row, minlength=encoded.n_texts)
    bounds = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    context = encoded.sequence == 1
    words = np.where(context, encoded.words, -1)
    return SpanLogits(encoded.texts, bounds, encoded.offsets, encoded.lengths, logits[:, 0].copy(),
                      logits[:, 1].copy(), context, encoded.spans, words)  # fmt: skip


@register("reader")
class Reader(Predictor):
    """A question-answering bundle variant: the best answer span of each (question, context), with character
    offsets into the context. Thread-safe like every :class:`~bertdeploy.runtime.predictor.Predictor`."""

    _encoder: PairEncoder
    max_answer_len: int
    """The longest answer, in tokens, when a call does not say: the cap the export picked on its evaluation
    questions (the manifest's ``answers.max_answer_len``), else the transformers pipeline's 15."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_answer_len = recorded_answer_len(self.manifest.raw, self.bundle)
        self.question_match = recorded_question_match(self.manifest.raw, self.bundle)

    @classmethod
    def make_encoder(cls, tokenizer: str | Path, max_length: int) -> PairEncoder:
        return PairEncoder(tokenizer, max_length, stride=min(max_length // 2, 128))

    @property
    def doc_stride(self) -> int:
        """Tokens shared by consecutive windows of a context (the pipeline's ``min(max_length // 2, 128)``)."""
        return self._encoder.stride

    question_match: bool
    """The bundle's reader was trained with question-match token types (``train --question-match``): context tokens
    that occur in the question get type 2 (:func:`~bertdeploy.runtime.tokenize.question_match_types`)."""

    def encode(self, records: Any) -> PairEncoded:  # type: ignore[override]
        """Tokenize (question, context) pairs into windows (``.truncated`` counts contexts that needed several; a
        question too long for a window: :class:`RecordError`)."""
        return self.encode_with(records)

    def _pairs(self, encoder: PairEncoder, pairs: list[tuple[str, str]]) -> PairEncoded:
        return encoder.encode_marked(pairs) if self.question_match else encoder.encode_pairs(pairs)

    def forward(self, encoded: PairEncoded) -> SpanLogits:  # type: ignore[override]
        logits = np.zeros((len(encoded.ids), 2), dtype=np.float32)

        def store(batch: Any, out: Any) -> None:
            lengths = encoded.lengths[batch.index]
            steps = np.arange(out.shape[1])
            mask = steps[None, :] < lengths[:, None]
            logits[(encoded.offsets[batch.index][:, None] + steps[None, :])[mask]] = out[mask]

        self.run_batches(encoded, store)
        return span_logits(encoded, logits)

    def concat(self, parts: list[SpanLogits]) -> SpanLogits:  # type: ignore[override]
        return parts[0] if len(parts) == 1 else SpanLogits.concat(parts)

    def decode(  # type: ignore[override]
        self,
        outputs: SpanLogits,
        top_k: int = 1,
        max_answer_len: int | None = None,
        handle_impossible_answer: bool = False,
        align_to_words: bool = True,
    ) -> list[Answer] | list[list[Answer]]:
        """Answers per question from :meth:`forward`'s logits (see :meth:`predict`)."""
        max_answer_len = self.max_answer_len if max_answer_len is None else max_answer_len
        check_params(top_k, max_answer_len)
        out = [
            answers(c, outputs.windows(i), int(top_k), int(max_answer_len), handle_impossible_answer, align_to_words)
            for i, c in enumerate(outputs.contexts)
        ]
        if top_k == 1:
            return [a[0] if a else Answer("", 0.0, 0, 0) for a in out]
        return out

    def encoder_for(self, doc_stride: int | None = None) -> PairEncoder:
        """The pair encoder that windows contexts with ``doc_stride`` tokens of overlap (None: the bundle's)."""
        if doc_stride is None or doc_stride == self.doc_stride:
            return self._encoder
        if not isinstance(doc_stride, numbers.Integral) or isinstance(doc_stride, bool) or doc_stride < 0:
            raise UserError(f"doc_stride must be an integer >= 0, got {doc_stride!r}")
        if doc_stride >= self.max_length - 3:
            raise UserError(f"doc_stride must be < {self.max_length - 3} (max_length {self.max_length} less the "
                            f"special tokens), got {doc_stride}")  # fmt: skip
        return _strided(str(self.bundle / self.manifest.tokenizer_file), self.max_length, int(doc_stride))

    def encode_with(self, records: Any, doc_stride: int | None = None) -> PairEncoded:
        """:meth:`encode` with ``doc_stride``; a question too long to leave its context more than the stride in a
        window: a :class:`RecordError` naming it (:meth:`PairEncoder.too_long`, before tokenizers would fail)."""
        encoder = self.encoder_for(doc_stride)
        pairs = as_pairs(records)
        found = encoder.too_long([q for q, _ in pairs])
        if found is not None:
            raise RecordError(found[0], encoder.too_long_reason(*found[1:]))
        try:
            return self._pairs(encoder, pairs)
        except BaseException as e:  # a tokenizers panic (pyo3 PanicException) the check above did not foresee
            message = str(e)
            if isinstance(e, (UserError, KeyboardInterrupt, SystemExit)) or not (
                "stride" in message or "too short to respect" in message
            ):
                raise
            raise UserError(f"doc_stride {encoder.stride} does not fit a window of {self.max_length} tokens with "
                            f"a question ({message.splitlines()[0][:100]})") from None  # fmt: skip

    def logits(self, records: Any, doc_stride: int | None = None) -> SpanLogits:
        pairs = as_pairs(records)
        parts = []
        for i in range(0, len(pairs), SORT_WINDOW):
            try:
                encoded = self.encode_with(pairs[i : i + SORT_WINDOW], doc_stride)
            except RecordError as e:  # its position in this call, not in the chunk
                raise RecordError(e.index + i, e.reason) from None
            parts.append(self.forward(encoded))
        return self.concat(parts) if parts else self.forward(self._pairs(self._encoder, []))

    def predict(self, records: Any, top_k: int = 1, max_answer_len: int | None = None,
                handle_impossible_answer: bool = False, align_to_words: bool = True, doc_stride: int | None = None,
                ) -> list[Answer] | list[list[Answer]]:  # fmt: skip
        """The answer of each question: an :class:`Answer` (``top_k > 1``: a best-first list) per record.

        Args:
            records: ``{"question": ..., "context": ...}`` dicts, ``(question, context)`` pairs, or one of either.
            top_k, max_answer_len, handle_impossible_answer, align_to_words, doc_stride: the transformers
                question-answering pipeline's parameters, with its meaning (``max_answer_len`` in tokens, default
                :attr:`max_answer_len`: the bundle's, else the pipeline's 15; with ``handle_impossible_answer`` the
                empty answer competes with the spans; ``doc_stride`` the tokens shared by consecutive windows,
                default the bundle's ``min(max_length // 2, 128)``).
        """
        check_params(top_k, self.max_answer_len if max_answer_len is None else max_answer_len)  # before any work
        outputs = self.logits(records, doc_stride)
        return self.decode(outputs, top_k, max_answer_len, handle_impossible_answer, align_to_words)


@functools.lru_cache(maxsize=8)
def _strided(tokenizer: str, max_length: int, stride: int) -> PairEncoder:
    return PairEncoder(tokenizer, max_length, stride=stride)


def recorded_answer_len(raw: dict[str, Any], bundle: Any) -> int:
    """The answer cap a bundle's manifest (``raw``) records in ``answers``, else the pipeline's 15; a malformed one is
    a :class:`UserError` naming ``bundle``."""
    record = raw.get("answers") or {}
    cap = record.get("max_answer_len", MAX_ANSWER_LEN) if isinstance(record, dict) else None
    if not isinstance(cap, int) or isinstance(cap, bool) or cap < 1:
        raise UserError(f"malformed manifest {bundle}: answers.max_answer_len must be an integer >= 1, got {cap!r}")
    return cap


def recorded_question_match(raw: dict[str, Any], bundle: Any) -> bool:
    """Whether a bundle's manifest (``raw``) says its reader takes question-match token types; a value other than
    true / false is a :class:`UserError` naming ``bundle``."""
    value = raw.get("question_match", False)
    if not isinstance(value, bool):
        raise UserError(f"malformed manifest {bundle}: question_match must be true or false, got {value!r}")
    return value


def check_params(top_k: Any, max_answer_len: Any) -> None:
    for name, value in (("top_k", top_k), ("max_answer_len", max_answer_len)):
        if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
            raise UserError(f"{name} must be an integer >= 1, got {value!r}")


def as_pairs(records: Any) -> list[tuple[str, str]]:
    """(question, context) pairs from dicts, tuples, or a single one of either; one :class:`UserError` naming the
    record for a missing field, a non-string or an empty question / context."""
    if isinstance(records, (dict, tuple)):
        records = [records]
    if isinstance(records, (str, bytes)) or not isinstance(records, Sequence):
        raise UserError("records must be {'question', 'context'} dicts or (question, context) pairs")
    out = []
    for i, record in enumerate(records):
        if isinstance(record, dict):
            missing = [k for k in ("question", "context") if k not in record]
            if missing:
                raise UserError(f"record #{i} has no {' or '.join(map(repr, missing))}")
            pair = (record["question"], record["context"])
        elif isinstance(record, (tuple, list)) and len(record) == 2:
            pair = (record[0], record[1])
        else:
            raise UserError(f"record #{i} must be a {{'question', 'context'}} dict or a (question, context) pair")
        for name, value in zip(("question", "context"), pair):
            if not isinstance(value, str):
                raise UserError(f"record #{i}: the {name} is {type(value).__name__}, not str")
            if not value.strip():
                raise UserError(f"record #{i}: the {name} is empty")
        out.append((str(pair[0]), str(pair[1])))
    return out
