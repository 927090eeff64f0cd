"""The gate's batches: tokenized evaluation rows cut into length-sorted, per-batch padded model calls (by the
runtime's own batcher), and where each batch's outputs go (one row per text, or flat per token)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from bertdeploy.runtime.spans import MAX_ANSWER_LEN

MODEL_INPUTS = {"input_ids": np.int64, "attention_mask": np.int64, "token_type_ids": np.int64}


@dataclass
class Batches:
    """Tokenized rows cut into length-sorted batches; ``index`` maps each batch row back to its input row.

    Per token (``tokens`` set, token classification): outputs are kept flat, row ``i``'s tokens at
    ``offsets[i]:offsets[i] + lengths[i]``, and ``tokens.words`` gives each token's word (-1: special token)."""

    feeds: list[dict[str, np.ndarray]]
    index: list[np.ndarray]
    n: int
    tokens: Any = None  # bertdeploy.runtime.tokenize.TokenEncoded (token classification, QA windows)
    kind: str = "text"
    """"text" | "tokens" | "spans" (QA, :mod:`bertdeploy.exporter.gate_qa`) | "choices" (multiple choice)."""
    max_answer_len: int = MAX_ANSWER_LEN
    """QA: the longest answer, in tokens, the answers are judged with (the bundle's, once picked)."""

    def empty(self, width: int) -> np.ndarray:
        rows = self.n if self.tokens is None else len(self.tokens.ids)
        return np.zeros((rows, width), dtype=np.float32)

    def store(self, out: np.ndarray, idx: np.ndarray, logits: np.ndarray) -> None:
        """Put one batch's logits (``[rows, labels]`` or ``[rows, padded, labels]``) into ``out``."""
        if self.tokens is None:
            out[idx] = logits
            return
        lengths = self.tokens.lengths[idx]
        steps = np.arange(logits.shape[1])
        mask = steps[None, :] < lengths[:, None]
        out[(self.tokens.offsets[idx][:, None] + steps[None, :])[mask]] = logits[mask]

    def real_tokens(self, rows: int) -> np.ndarray:
        """Flat indices of the real (non-special) tokens of the first ``rows`` rows."""
        tok = self.tokens
        end = int(tok.offsets[rows - 1] + tok.lengths[rows - 1]) if rows else 0
        return np.flatnonzero(tok.words[:end] >= 0)


def runtime_encoder(tokenizer: Any, max_length: int, cls: Any = None, **kw: Any) -> Any:
    """The runtime's encoder (``cls``, default :class:`~bertdeploy.runtime.tokenize.TextEncoder`) over the fast
    tokenizer's own ``tokenizers`` backend, as the bundle ships it."""
    from tokenizers import Tokenizer

    from bertdeploy.runtime.tokenize import TextEncoder

    return (cls or TextEncoder)(Tokenizer.from_str(tokenizer.backend_tokenizer.to_str()), max_length, **kw)


def cut(encoded: Any, pad_id: int, max_length: int, batch_size: int, **kw: Any) -> Batches:
    """Length-sorted batches of ``encoded``'s rows padded to their longest row, exactly as the runtime cuts them."""
    from bertdeploy.runtime.batching import BatchPolicy, make_feed, plan

    policy = BatchPolicy(padding="bucketed", batch_size=batch_size, max_tokens=batch_size * max_length)
    feeds, index = [], []
    for idx, padded in plan(encoded.lengths, policy, max_length):
        feeds.append(make_feed(encoded, idx, padded, MODEL_INPUTS, pad_id))
        index.append(idx)
    return Batches(feeds, index, len(encoded.lengths), **kw)
