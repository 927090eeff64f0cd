"""Tokenization with the bundle's ``tokenizer.json`` (Hugging Face ``tokenizers``, no transformers).

Texts are batch-encoded without padding (padding is decided per batch later) and truncated to the bundle's
``max_length``; token ids are kept as one flat array plus offsets, so a chunk of texts costs a few numpy
arrays rather than thousands of Python objects.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from bertdeploy.errors import UserError

_PAD_TOKENS = ("[PAD]", "<pad>", "<PAD>", "<|pad|>")


@dataclass(frozen=True)
class Encoded:
    """Token ids of ``n`` texts: row ``i`` is ``ids[offsets[i]:offsets[i] + lengths[i]]``."""

    ids: np.ndarray
    offsets: np.ndarray
    lengths: np.ndarray
    truncated: int
    """how many texts were longer than ``max_length`` and were cut."""
    type_ids: np.ndarray | None = None
    """Segment ids aligned with ``ids`` (text pairs: 0 for the first text, 1 for the second); None: all 0."""

    def __len__(self) -> int:
        return len(self.lengths)

    def row(self, i: int) -> np.ndarray:
        return self.ids[self.offsets[i] : self.offsets[i] + self.lengths[i]]


class TextEncoder:
    """Wraps a ``tokenizers.Tokenizer``; immutable after construction (safe to share between threads)."""

    def __init__(self, path: str | Path | Tokenizer, max_length: int) -> None:
        if isinstance(path, Tokenizer):
            tok = path  # taken over: its padding / truncation settings are changed below
        else:
            try:
                tok = Tokenizer.from_file(str(path))
            except Exception as e:  # tokenizers raises a plain Exception on a missing / malformed file
                raise UserError(f"cannot read tokenizer {path}: {str(e).splitlines()[0]}") from None
        padding = tok.padding
        pad_id = padding.get("pad_id") if padding else None
        if pad_id is None:
            pad_id = next((tok.token_to_id(t) for t in _PAD_TOKENS if tok.token_to_id(t) is not None), 0)
        tok.no_padding()
        tok.enable_truncation(max_length)
        self._tok = tok
        self.max_length = max_length
        self.pad_id = int(pad_id)

    @property
    def vocab_size(self) -> int:
        """Token ids this tokenizer can produce (added tokens included): ``0 .. vocab_size - 1``."""
        return int(self._tok.get_vocab_size(with_added_tokens=True))

    def encode(self, texts: Sequence[str]) -> Encoded:
        """Encode ``texts`` (strings only, ``str`` subclasses such as ``np.str_`` converted; raises
        :class:`UserError` naming the first non-string)."""
        if not all(type(t) is str for t in texts):
            bad = next((i for i, t in enumerate(texts) if not isinstance(t, str)), None)
            if bad is not None:
                raise UserError(f"text #{bad} is {type(texts[bad]).__name__}, not str")
            texts = [str(t) for t in texts]
        # encode_batch_fast skips the character offsets nobody reads here (~10 % of the tokenizer's CPU per text,
        # benchmarks/runtime/README.md); same ids and truncation. tokenizers < 0.21 lacks it.
        encode = getattr(self._tok, "encode_batch_fast", self._tok.encode_batch)
        encodings = encode(list(texts), add_special_tokens=True)
        lengths = np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=len(encodings))
        total = int(lengths.sum())
        ids = np.fromiter(itertools.chain.from_iterable(e.ids for e in encodings), dtype=np.int64, count=total)
        offsets = np.zeros(len(lengths), dtype=np.int64)
        if len(lengths) > 1:
            np.cumsum(lengths[:-1], out=offsets[1:])
        truncated = sum(1 for e in encodings if e.overflowing)
        return Encoded(ids=ids, offsets=offsets, lengths=lengths, truncated=truncated)

    def encode_words(self, sentences: Sequence[Sequence[str]]) -> TokenEncoded:
        """Encode pre-split words (``is_pretokenized``, truncated to ``max_length``, no windows), keeping each
        token's word index: how training and the export gate see token-classification data. ``spans`` are offsets
        inside each word; ``texts`` the words joined with spaces."""
        encodings = self._tok.encode_batch([list(s) for s in sentences], is_pretokenized=True)
        texts = tuple(" ".join(s) for s in sentences)
        return _token_encoded(encodings, list(range(len(encodings))), texts)


@dataclass(frozen=True, kw_only=True)
class TokenEncoded(Encoded):
    """:class:`Encoded` windows of texts, with what token classification needs to map tokens back to characters.

    A text longer than ``max_length`` becomes several rows (windows overlapping by ``stride`` tokens); rows of one
    text are consecutive. Per token (aligned with ``ids``): ``spans`` its character offsets ``[start, end)`` into
    the text (special tokens ``(0, 0)``), ``words`` the index of the word it belongs to (-1 for special tokens).
    """

    spans: np.ndarray
    words: np.ndarray
    text_of_row: np.ndarray
    """The index of the text each row (window) belongs to."""
    texts: tuple[str, ...]

    @property
    def n_texts(self) -> int:
        return len(self.texts)


class TokenEncoder(TextEncoder):
    """:class:`TextEncoder` that keeps character offsets and word ids, and windows a long text with ``stride``
    tokens of overlap instead of truncating it (the tokenizers library's own overflow)."""

    def __init__(self, path: str | Path | Tokenizer, max_length: int, stride: int | None = None) -> None:
        super().__init__(path, max_length)
        room = max(1, max_length - self._tok.num_special_tokens_to_add(False))
        self.stride = min(room - 1, max(0, room // 4 if stride is None else stride))
        self._tok.enable_truncation(max_length, stride=self.stride)

    def encode(self, texts: Sequence[str]) -> TokenEncoded:  # type: ignore[override]
        encodings = self._tok.encode_batch(list(texts), add_special_tokens=True)
        rows, text_of_row = [], []
        for i, e in enumerate(encodings):
            rows.append(e)
            rows.extend(e.overflowing)
            text_of_row.extend([i] * (1 + len(e.overflowing)))
        encoded = _token_encoded(rows, text_of_row, tuple(texts))
        return replace(encoded, truncated=sum(1 for e in encodings if e.overflowing))


def _token_encoded(rows: list, text_of_row: list[int], texts: tuple[str, ...]) -> TokenEncoded:
    """:class:`TokenEncoded` of tokenizers ``Encoding`` rows (``truncated`` counts rows that overflowed)."""
    lengths = np.fromiter((len(r.ids) for r in rows), dtype=np.int64, count=len(rows))
    total = int(lengths.sum())
    chain = itertools.chain.from_iterable
    ids = np.fromiter(chain(r.ids for r in rows), dtype=np.int64, count=total)
    spans = np.fromiter(chain(chain(r.offsets for r in rows)), dtype=np.int64, count=2 * total).reshape(total, 2)
    words = np.fromiter((-1 if w is None else w for w in chain(r.word_ids for r in rows)), dtype=np.int64, count=total)
    special = np.fromiter(chain(r.special_tokens_mask for r in rows), dtype=bool, count=total)
    words[special] = -1
    types = np.fromiter(chain(r.type_ids for r in rows), dtype=np.int64, count=total)
    offsets = np.zeros(len(lengths), dtype=np.int64)
    if len(lengths) > 1:
        np.cumsum(lengths[:-1], out=offsets[1:])
    return TokenEncoded(
        ids=ids,
        offsets=offsets,
        lengths=lengths,
        truncated=sum(1 for r in rows if r.overflowing),
        type_ids=types if types.any() else None,
        spans=spans,
        words=words,
        text_of_row=np.asarray(text_of_row, dtype=np.int64),
        texts=texts,
    )


@dataclass(frozen=True, kw_only=True)
class PairEncoded(TokenEncoded):
    """:class:`TokenEncoded` of (first, second) text pairs (question / context, question / choice): ``texts`` are
    the second texts, ``spans`` of second-text tokens point into them, and ``sequence`` tells per token which text it
    comes from (0 first, 1 second, -1 special)."""

    sequence: np.ndarray
    firsts: tuple[str, ...]


class PairEncoder(TextEncoder):
    """Encodes (first, second) pairs; a second text too long for ``max_length`` is cut into windows that overlap by
    ``stride`` tokens, the first text repeated in each (the tokenizers library's ``only_second`` overflow, as the
    transformers question-answering pipeline encodes), or with ``windows=False`` truncated like training's
    ``truncation=True`` (``longest_first``). ``offsets=False``: no character offsets (``spans`` all zero; the
    tokenizers library's ``encode_batch_fast``, ~25 % less tokenizer CPU on paragraphs), for readers of ids only."""

    def __init__(
        self, path: str | Path | Tokenizer, max_length: int, stride: int = 0, windows: bool = True, offsets: bool = True
    ) -> None:
        super().__init__(path, max_length)
        self.stride = stride
        self.windows = windows
        self.offsets = offsets
        self._count_tok: Tokenizer | None = None
        strategy = "only_second" if windows else "longest_first"
        self._tok.enable_truncation(max_length, stride=stride if windows else 0, strategy=strategy)

    def too_long(self, questions: Sequence[str]) -> tuple[int, int, int] | None:
        """The first question that leaves its context no more than ``stride`` tokens of a window (with windows;
        tokenizers fails or panics on it) as (its index, its tokens, the tokens left), else None. Only questions whose
        UTF-8 length, a bound on their tokens, says they might not fit are tokenized."""
        if not self.windows:
            return None
        processor = self._tok.post_processor
        free = self.max_length - (processor.num_special_tokens_to_add(True) if processor is not None else 0)
        suspects = [i for i, q in enumerate(questions) if len(q.encode("utf-8")) + 2 >= free - self.stride]
        if not suspects:
            return None
        found = self._counter().encode_batch([questions[i] for i in suspects], add_special_tokens=False)
        return next(((i, len(e.ids), free - len(e.ids)) for i, e in zip(suspects, found)
                     if free - len(e.ids) <= self.stride), None)  # fmt: skip

    def _counter(self) -> Tokenizer:
        """A copy of the tokenizer without truncation (this one truncates pairs only), made once per encoder."""
        if self._count_tok is None:
            counter = Tokenizer.from_str(self._tok.to_str())
            counter.no_truncation()
            counter.no_padding()
            self._count_tok = counter
        return self._count_tok

    def too_long_reason(self, tokens: int, left: int) -> str:
        """Why a question of ``tokens`` tokens, leaving ``left`` of a window for its context, is refused."""
        if left <= 0:
            return (f"the question ({tokens} tokens) leaves no room for the context in a window of "
                    f"{self.max_length} tokens: shorten it")  # fmt: skip
        return (f"the question ({tokens} tokens) leaves {left} tokens of the {self.max_length}-token window for the "
                f"context, not more than doc_stride {self.stride}: shorten it or pass a smaller "
                "doc_stride")  # fmt: skip

    def encode_pairs(self, pairs: Sequence[tuple[str, str]]) -> PairEncoded:
        """Encode ``pairs``; with windows, a pair may become several consecutive rows (``text_of_row``)."""
        encode = (
            self._tok.encode_batch if self.offsets else getattr(self._tok, "encode_batch_fast", self._tok.encode_batch)
        )
        encodings = encode([(a, b) for a, b in pairs], add_special_tokens=True)
        rows, text_of_row = [], []
        for i, e in enumerate(encodings):
            extra = e.overflowing if self.windows else []
            rows.extend([e, *extra])
            text_of_row.extend([i] * (1 + len(extra)))
        base = _token_encoded(rows, text_of_row, tuple(b for _, b in pairs))
        chain = itertools.chain.from_iterable
        total = len(base.ids)
        sequence = np.fromiter((-1 if s is None else s for s in chain(r.sequence_ids for r in rows)), np.int64, total)
        fields = {name: getattr(base, name) for name in base.__dataclass_fields__}
        fields["truncated"] = sum(1 for e in encodings if e.overflowing)
        return PairEncoded(**fields, sequence=sequence, firsts=tuple(a for a, _ in pairs))

    @functools.cached_property
    def special_ids(self) -> np.ndarray:
        """The ids of the tokenizer's special tokens (:func:`special_ids`)."""
        return special_ids(self._tok)

    def encode_marked(self, pairs: Sequence[tuple[str, str]]) -> PairEncoded:
        """:meth:`encode_pairs` with :func:`question_match_types` as the token types."""
        encoded = self.encode_pairs(pairs)
        plain = encoded.type_ids if encoded.type_ids is not None else np.zeros_like(encoded.ids)
        types = question_match_types(encoded.ids, encoded.sequence, encoded.lengths, plain, self.special_ids)
        return replace(encoded, type_ids=types)


#: the token type of a context token that occurs in its question (0: the question, 1: the rest of the context)
MATCH_TYPE = 2


def special_ids(tok: Tokenizer) -> np.ndarray:
    """The ids of a tokenizer's special tokens (``[CLS]``, ``[SEP]``, ``[PAD]``, ``[UNK]``, ``[MASK]`` ...)."""
    added = tok.get_added_tokens_decoder()
    return np.asarray(sorted(i for i, token in added.items() if token.special), dtype=np.int64)


def uses_question_match(config: object) -> bool:
    """Whether a model config (transformers') says the reader was trained with question-match token types."""
    return getattr(config, "question_match", False) is True


def question_match_types(
    ids: np.ndarray, sequence: np.ndarray, lengths: np.ndarray, types: np.ndarray, special: np.ndarray
) -> np.ndarray:
    """``types`` (a pair encoding's token types) with the context tokens that occur in their question set to
    :data:`MATCH_TYPE` (DrQA's exact-match feature, for readers trained with ``--question-match``): per row
    (window) of the flat ``ids``, a context token (``sequence`` 1) matches when its id is one of the row's question
    (``sequence`` 0) token ids; special tokens (``special`` ids, ``[UNK]`` among them) never match. Rows are
    ``lengths`` long, one after the other."""
    ids = np.asarray(ids, dtype=np.int64)
    sequence = np.asarray(sequence, dtype=np.int64)
    row = np.repeat(np.arange(len(lengths), dtype=np.int64), lengths)
    plain = ~np.isin(ids, special)
    keys = row * (int(ids.max(initial=0)) + 1) + ids
    asked = np.unique(keys[(sequence == 0) & plain])
    out = np.array(types, dtype=np.int64)
    out[(sequence == 1) & plain & np.isin(keys, asked)] = MATCH_TYPE
    return out
