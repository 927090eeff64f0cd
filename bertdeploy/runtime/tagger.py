"""The token-classification head: ``load(bundle)`` of a token-classification bundle -> :class:`Tagger`.

Raw text in, entities out, as production sends it: each text is tokenized with character offsets (a text longer
than ``max_length`` becomes overlapping windows, and each token keeps the prediction of the window where it sits
farthest from an edge, so no entity is lost at a window edge), the per-token softmax is aggregated into entities
with the transformers pipeline's semantics (:mod:`bertdeploy.runtime.entities`), and every entity carries
character offsets into the original text (``word == text[start:end]``; right for Chinese too: no spaces are
inserted). Pre-split words (a list of strings instead of a string) are joined with single spaces, and the offsets
point into that joined text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bertdeploy.errors import UserError
from bertdeploy.runtime.entities import (
    AGGREGATIONS,
    Entity,
    TagPrior,
    aggregate,
    check_aggregation,
    check_decoding,
    check_ignore,
    check_word_boundaries,
)
from bertdeploy.runtime.heads import register
from bertdeploy.runtime.predictor import SORT_WINDOW, Predictor, check_texts, unambiguous
from bertdeploy.runtime.tag_batch import FEW_TEXTS, best_tags_many, token_entities, word_entities
from bertdeploy.runtime.tokenize import TokenEncoded, TokenEncoder

__all__ = ["AGGREGATIONS", "Entity", "TokenScores", "Tagger", "first_sub_tokens"]

Words = Sequence[str]


@dataclass(frozen=True)
class TokenScores:
    """Per-token softmax of ``n`` texts, merged across windows: text ``i``'s tokens (special tokens removed, in
    text order) are rows ``bounds[i]:bounds[i + 1]`` of ``scores`` / ``spans`` / ``words``."""

    texts: tuple[str, ...]
    bounds: np.ndarray
    scores: np.ndarray
    spans: np.ndarray
    words: np.ndarray

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, key: slice) -> TokenScores:
        if not isinstance(key, slice) or key.step not in (None, 1):
            raise TypeError("TokenScores is sliced by a contiguous range of texts")
        start, stop, _ = key.indices(len(self.texts))
        stop = max(start, stop)
        a, b = int(self.bounds[start]), int(self.bounds[stop])
        sl = slice(a, b)
        return TokenScores(self.texts[start:stop], self.bounds[start : stop + 1] - a, self.scores[sl],
                           self.spans[sl], self.words[sl])  # fmt: skip

    def tokens(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(scores, spans, words) of text ``i``."""
        sl = slice(int(self.bounds[i]), int(self.bounds[i + 1]))
        return self.scores[sl], self.spans[sl], self.words[sl]

    @classmethod
    def concat(cls, parts: list[TokenScores]) -> TokenScores:
        sizes = np.cumsum([0, *(int(p.bounds[-1]) for p in parts)])
        bounds = np.concatenate([[0], *(p.bounds[1:] + s for p, s in zip(parts, sizes[:-1]))])
        return cls(
            tuple(t for p in parts for t in p.texts),
            bounds.astype(np.int64),
            np.concatenate([p.scores for p in parts]),
            np.concatenate([p.spans for p in parts]),
            np.concatenate([p.words for p in parts]),
        )


@register("tagger")
class Tagger(Predictor):
    """A token-classification bundle variant: entities with character offsets per text. Thread-safe like every
    :class:`~bertdeploy.runtime.predictor.Predictor`."""

    _encoder: TokenEncoder
    prior: TagPrior | None
    """The training tags' transition scores that ``bio`` decoding adds (the manifest's ``tag_transitions``); None
    for a bundle exported without them (before bertdeploy counted them): the BIO rule alone."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        table = self.manifest.raw.get("tag_transitions")
        try:
            self.prior = None if table is None else TagPrior.from_counts(table, len(self.labels))
        except ValueError as e:
            raise UserError(f"malformed manifest {self.bundle}: {e}") from None

    @classmethod
    def make_encoder(cls, tokenizer: str | Path, max_length: int) -> TokenEncoder:
        return TokenEncoder(tokenizer, max_length)

    @property
    def stride(self) -> int:
        """Tokens shared by consecutive windows of a text longer than ``max_length``."""
        return self._encoder.stride

    def encode(self, texts: Sequence[str] | Sequence[Words]) -> TokenEncoded:
        """Tokenize with offsets and word ids; ``.truncated`` counts the texts that needed several windows."""
        return self._encoder.encode(as_inputs(texts))

    def token_logits(self, encoded: TokenEncoded) -> np.ndarray:
        """Raw logits ``[tokens, labels]`` of every token of ``encoded`` (aligned with ``encoded.ids``)."""
        logits = np.zeros((len(encoded.ids), len(self.labels)), dtype=np.float32)

        def store(batch: Any, out: np.ndarray) -> None:
            lengths = encoded.lengths[batch.index]
            steps = np.arange(out.shape[1])
            mask = steps[None, :] < lengths[:, None]
            pos = encoded.offsets[batch.index][:, None] + steps[None, :]
            logits[pos[mask]] = out[mask]

        self.run_batches(encoded, store)
        return logits

    def word_logits(self, sentences: Sequence[Words]) -> np.ndarray:
        """Raw logits of each word's first sub-token, for pre-split sentences encoded as training encodes them
        (``is_pretokenized``, truncated to ``max_length``, no windows): ``[total words, labels]``, the words of
        sentence ``i`` after those of sentences ``0..i-1``; a word that truncation cut off (or that has no token)
        gets a row of NaN."""
        counts = np.fromiter((len(s) for s in sentences), dtype=np.int64, count=len(sentences))
        starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        out = np.full((int(starts[-1]), len(self.labels)), np.nan, dtype=np.float32)
        for a in range(0, len(sentences), SORT_WINDOW):
            encoded = self._encoder.encode_words(sentences[a : a + SORT_WINDOW])
            positions, rows = first_sub_tokens(encoded.words, _row_of_token(encoded), starts[a:])
            out[rows] = self.token_logits(encoded)[positions]
        return out

    def forward(self, encoded: TokenEncoded) -> TokenScores:  # type: ignore[override]
        """Softmax per token, each token taken from the window where it is farthest from an edge."""
        logits = self.token_logits(encoded)
        keep = _best_window_tokens(encoded)
        z = logits[keep]
        z -= z.max(axis=1, keepdims=True) if len(z) else 0
        np.exp(z, out=z)
        z /= z.sum(axis=1, keepdims=True) if len(z) else 1
        counts = np.bincount(encoded.text_of_row[_row_of_token(encoded)[keep]], minlength=encoded.n_texts)
        bounds = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        return TokenScores(encoded.texts, bounds, z, encoded.spans[keep], encoded.words[keep])

    def concat(self, parts: list[TokenScores]) -> TokenScores:  # type: ignore[override]
        return parts[0] if len(parts) == 1 else TokenScores.concat(parts)

    def decode(  # type: ignore[override]
        self,
        outputs: TokenScores,
        aggregation: str = "simple",
        ignore_labels: Sequence[str] | None = ("O",),
        word_boundaries: str = "whitespace",
        decoding: str = "bio",
    ) -> list[list[Entity]]:
        """Entities per text from :meth:`forward`'s scores (see :meth:`predict`)."""
        strategy = check_aggregation(aggregation)
        ignore = check_ignore(ignore_labels)
        bounds = check_word_boundaries(word_boundaries)
        rule = check_decoding(decoding)
        if len(outputs) < FEW_TEXTS:  # one request, batch 1: numpy's fixed cost per batch is more than the texts'
            return [aggregate(text, *outputs.tokens(i), self.labels, strategy, ignore, bounds, rule, self.prior)
                    for i, text in enumerate(outputs.texts)]  # fmt: skip
        if strategy in ("none", "simple"):  # every text at once (bertdeploy.runtime.tag_batch)
            tags = best_tags_many(
                outputs.scores, outputs.bounds, self.labels, rule, probabilities=True, prior=self.prior
            )
            return token_entities(outputs.texts, outputs.bounds, outputs.scores, outputs.spans, tags, self.labels,
                                  ignore, grouped=strategy == "simple")  # fmt: skip
        return word_entities(outputs.texts, outputs.bounds, outputs.scores, outputs.spans, outputs.words, self.labels,
                             strategy, ignore, bounds, rule, self.prior)  # fmt: skip

    def scores(self, texts: Sequence[str] | Sequence[Words]) -> TokenScores:
        """Per-token softmax of ``texts`` (:class:`TokenScores`), ``SORT_WINDOW`` texts at a time."""
        texts = as_inputs(texts)
        parts = [self.forward(self.encode(texts[i : i + SORT_WINDOW])) for i in range(0, len(texts), SORT_WINDOW)]
        return self.concat(parts) if parts else self.forward(self.encode([]))

    def predict(
        self,
        texts: Sequence[str] | Sequence[Words],
        aggregation: str = "simple",
        ignore_labels: Sequence[str] | None = ("O",),
        word_boundaries: str = "whitespace",
        decoding: str = "bio",
    ) -> list[list[Entity]]:
        """The entities of each text: a list of :class:`Entity` per text, in text order.

        Args:
            texts: strings, as production sends them; or pre-split words (a list of strings per text), joined
                with single spaces (the offsets point into the joined text).
            aggregation: ``simple`` (tokens grouped by B-/I- tags), ``first`` / ``average`` / ``max`` (a word's
                tag from its first token / its mean scores / its most confident token, then grouped), ``none``
                (one :class:`Entity` per token, its tag in ``entity_group``) — the transformers pipeline's
                ``aggregation_strategy``.
            ignore_labels: entity groups (tags for ``none``) left out; ``None`` keeps everything.
            word_boundaries: what a word is for ``first`` / ``average`` / ``max``: ``whitespace`` (default: a run of
                text without spaces, each CJK character its own word — the words token data is labelled on, so
                ``top-rated`` gets one tag) or ``tokenizer`` (the tokenizer's words, split at punctuation too: what
                the transformers pipeline does).
            decoding: ``bio`` (default: the most probable tag sequence in which ``I-X`` only follows ``B-X`` /
                ``I-X``, over the tokens or the words, with the training tags' transition scores where the bundle
                has them: :attr:`prior`) or ``argmax`` (each tag on its own, as the pipeline does).
        """
        strategy = check_aggregation(aggregation)  # bad options fail before any work
        check_ignore(ignore_labels)
        check_word_boundaries(word_boundaries)
        check_decoding(decoding)
        return self.decode(self.scores(texts), strategy, ignore_labels, word_boundaries, decoding)


def as_inputs(texts: Any) -> list[str]:
    """Texts (or pre-split words, joined with spaces) as a checked list of strings."""
    if isinstance(texts, str):
        return check_texts([texts])
    if isinstance(texts, (bytes, bytearray, dict)) or not hasattr(texts, "__iter__"):
        raise UserError(f"texts must be a string or a sequence of strings, got {type(texts).__name__}")
    out: list[object] = []
    for i, item in enumerate(unambiguous(texts)):
        if isinstance(item, (list, tuple)):
            if not item or not all(isinstance(w, str) and w.strip() for w in item):
                raise UserError(f"text #{i}: pre-split words must be a non-empty list of non-blank strings")
            item = " ".join(w.strip() for w in item)
        out.append(item)
    return check_texts(out)


def first_sub_tokens(words: np.ndarray, rows: np.ndarray, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where each word's first sub-token is, from per-token word ids (``-1``: a special or padding token) and the
    row (sentence) of each token, tokens in order: (token positions, global word indices ``starts[row] + word``)."""
    real = np.flatnonzero(np.asarray(words) >= 0)
    index = np.asarray(starts)[np.asarray(rows)[real]] + np.asarray(words)[real]
    unique, first = np.unique(index, return_index=True)
    return real[first], unique


def _row_of_token(encoded: TokenEncoded) -> np.ndarray:
    return np.repeat(np.arange(len(encoded.lengths)), encoded.lengths)


def _best_window_tokens(encoded: TokenEncoded) -> np.ndarray:
    """Flat indices of the tokens to keep: non-special, one per (text, character span), taken from the window
    where the token is farthest from the window's edge; in text order."""
    rows = _row_of_token(encoded)
    real = np.flatnonzero(encoded.words >= 0)
    if len(encoded.lengths) == encoded.n_texts:  # no text was windowed: every real token, in order
        return real
    position = np.arange(len(encoded.ids)) - np.repeat(encoded.offsets, encoded.lengths)
    edge = np.minimum(position, np.repeat(encoded.lengths, encoded.lengths) - 1 - position)[real]
    text = encoded.text_of_row[rows[real]]
    start = encoded.spans[real, 0]
    end = encoded.spans[real, 1]
    # sort by (text, start, end, -edge): the first of each (text, start, end) group is the most central copy
    order = np.lexsort((-edge, end, start, text))
    t, s, e = text[order], start[order], end[order]
    first = np.ones(len(order), dtype=bool)
    first[1:] = (t[1:] != t[:-1]) | (s[1:] != s[:-1]) | (e[1:] != e[:-1])
    return real[order[first]]
