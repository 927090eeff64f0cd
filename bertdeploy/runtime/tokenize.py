"""Tokenization with the bundle's ``tokenizer.json`` (Hugging Face ``tokenizers``, no transformers).

Texts are batch-encoded without padding (padding is decided per batch later) and truncated to the bundle's
``max_length``; token ids are kept as one flat array plus offsets, so a chunk of texts costs a few numpy
arrays rather than thousands of Python objects.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
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

    def encode(self, texts: Sequence[str]) -> Encoded:
        """Encode ``texts`` (strings only, ``str`` subclasses such as ``np.str_`` converted; raises
        :class:`UserError` naming the first non-string)."""
        if not all(type(t) is str for t in texts):
            bad = next((i for i, t in enumerate(texts) if not isinstance(t, str)), None)
            if bad is not None:
                raise UserError(f"text #{bad} is {type(texts[bad]).__name__}, not str")
            texts = [str(t) for t in texts]
        encodings = self._tok.encode_batch(list(texts), add_special_tokens=True)
        lengths = np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=len(encodings))
        total = int(lengths.sum())
        ids = np.fromiter(itertools.chain.from_iterable(e.ids for e in encodings), dtype=np.int64, count=total)
        offsets = np.zeros(len(lengths), dtype=np.int64)
        if len(lengths) > 1:
            np.cumsum(lengths[:-1], out=offsets[1:])
        truncated = sum(1 for e in encodings if e.overflowing)
        return Encoded(ids=ids, offsets=offsets, lengths=lengths, truncated=truncated)
