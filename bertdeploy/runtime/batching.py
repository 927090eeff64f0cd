"""Batch planning: which texts go together and how far each batch is padded.

Three padding modes (all give the same predictions; only speed differs):

* ``bucketed`` — sort by token length, then cut batches greedily so that ``rows * padded_len <= max_tokens``
  and ``rows <= batch_size``; each batch is padded to its own longest row, and a row that would make the padding
  exceed ``max_padding`` of the batch's tokens (and :data:`PADDING_FLOOR` tokens) starts the next batch, so little
  compute is spent on padding even where lengths jump (a question's full reader windows and its short last one:
  one more call, +5-23 % questions a second at batch 1 on DRCD; the runtime's default on ONNX Runtime's CPU EP).
  The caller's order is restored by the ``index`` carried with each batch.
* ``dynamic`` — the same budget, in input order (padding to each batch's longest row, no sorting).
* ``static`` — input order, every batch padded to ``max_length`` (the classic fixed-shape baseline).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from bertdeploy.errors import UserError
from bertdeploy.runtime.tokenize import Encoded

PADDING_MODES = ("bucketed", "dynamic", "static")
#: padding (tokens) a bucketed batch may always hold, whatever its share: cutting for less costs a model call more
#: than the padding it saves
PADDING_FLOOR = 32


@dataclass(frozen=True)
class BatchPolicy:
    padding: str = "bucketed"
    batch_size: int = 64
    """at most this many rows per batch."""
    max_tokens: int = 8192
    """token budget per batch, counted as rows x padded length (a single longer row still runs alone)."""
    pad_multiple: int = 1
    """pad each batch's length up to a multiple of this (capped at max_length): fewer distinct shapes for engines
    that prepare kernels per input shape (the OpenVINO EP; :data:`bertdeploy.runtime.plugins.PAD_MULTIPLE`)."""
    max_padding: float = 0.1
    """bucketed: the largest share of a batch's tokens that may be padding (beyond :data:`PADDING_FLOOR` tokens)
    before a longer row starts a new batch; 1.0 cuts only on ``batch_size`` and ``max_tokens``."""

    def __post_init__(self) -> None:
        if self.padding not in PADDING_MODES:
            raise UserError(f"padding must be one of {', '.join(PADDING_MODES)}, got {self.padding!r}")
        for name in ("batch_size", "max_tokens", "pad_multiple"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise UserError(f"{name} must be >= 1 (an integer), got {value!r}")
        share = self.max_padding
        if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 <= share <= 1:
            raise UserError(f"max_padding must be a share between 0 and 1, got {share!r}")


@dataclass(frozen=True)
class Batch:
    """One model call: ``feed`` holds exactly the graph's inputs; ``index`` maps its rows back to the
    positions of the texts in the caller's sequence."""

    index: np.ndarray
    feed: dict[str, np.ndarray]

    @property
    def shape(self) -> tuple[int, int]:
        first = next(iter(self.feed.values()))
        return int(first.shape[0]), int(first.shape[1])


def plan(lengths: np.ndarray, policy: BatchPolicy, max_length: int) -> list[tuple[np.ndarray, int]]:
    """Group row positions into batches; returns ``(index, padded_len)`` pairs covering every row once."""
    n = len(lengths)
    if n == 0:
        return []
    if policy.padding == "bucketed":
        order = np.argsort(lengths, kind="stable")
    else:
        order = np.arange(n)
    sizes = np.full(n, max_length, dtype=np.int64) if policy.padding == "static" else lengths[order]
    if policy.pad_multiple > 1 and policy.padding != "static":
        m = policy.pad_multiple
        sizes = np.minimum(-(-sizes // m) * m, max_length)
    share = policy.max_padding if policy.padding == "bucketed" else 1.0
    groups: list[tuple[np.ndarray, int]] = []
    start, cur, real = 0, 0, 0
    for pos, length in enumerate(sizes.tolist()):
        new = max(cur, length)
        rows = pos - start + 1
        tokens = rows * new
        wasted = tokens - real - length
        if rows > 1 and (
            rows > policy.batch_size or tokens > policy.max_tokens or wasted > max(PADDING_FLOOR, share * tokens)
        ):
            groups.append((order[start:pos], cur))
            start, new, real = pos, length, 0
        cur, real = new, real + length
    groups.append((order[start:], cur))
    return groups


def make_feed(
    encoded: Encoded, index: np.ndarray, padded_len: int, specs: dict[str, type], pad_id: int
) -> dict[str, np.ndarray]:
    """Pad the rows ``index`` of ``encoded`` to ``padded_len`` and build the graph's inputs."""
    lengths = encoded.lengths[index]
    steps = np.arange(padded_len)
    mask = steps[None, :] < lengths[:, None]
    pos = encoded.offsets[index][:, None] + steps[None, :]
    np.minimum(pos, max(len(encoded.ids) - 1, 0), out=pos)
    input_ids = np.where(mask, encoded.ids[pos], pad_id)
    feed: dict[str, np.ndarray] = {}
    for name, dtype in specs.items():
        if name == "input_ids":
            feed[name] = input_ids.astype(dtype, copy=False)
        elif name == "attention_mask":
            feed[name] = mask.astype(dtype)
        elif name == "token_type_ids":
            if encoded.type_ids is None:
                feed[name] = np.zeros(mask.shape, dtype=dtype)
            else:
                feed[name] = np.where(mask, encoded.type_ids[pos], 0).astype(dtype, copy=False)
        elif name == "position_ids":
            feed[name] = np.broadcast_to(steps.astype(dtype), mask.shape).copy()
        else:
            raise UserError(f"the model declares an input the runtime cannot build: {name!r}")
    return feed


def iter_batches(
    encoded: Encoded, policy: BatchPolicy, max_length: int, specs: dict[str, type], pad_id: int
) -> Iterator[Batch]:
    """Lazily build the batches of :func:`plan` (one padded batch in memory at a time)."""
    for index, padded_len in plan(encoded.lengths, policy, max_length):
        yield Batch(index=index, feed=make_feed(encoded, index, padded_len, specs, pad_id))
