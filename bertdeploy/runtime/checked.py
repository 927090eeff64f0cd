"""The runtime side of a checked variant (``qint8_checked``): the texts whose top-two probability gap under the
fast file is below the manifest's margin run again on the check file, whose logits replace theirs.

The margin was calibrated at export on the evaluation rows and the combination gated like any variant
(:mod:`bertdeploy.exporter.checked`); here the same rule is applied to every text, in the same softmax.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from bertdeploy import bundle as _bundle
from bertdeploy.errors import UserError
from bertdeploy.runtime import session as _session
from bertdeploy.runtime.batching import BatchPolicy, make_feed, plan
from bertdeploy.runtime.classifier import softmax
from bertdeploy.runtime.tokenize import Encoded

#: the tasks a checked variant is built for: one label per text, decided by a softmax over labels
TASKS = ("text-classification",)


def top_gap(logits: np.ndarray) -> np.ndarray:
    """The gap between the two largest softmax probabilities of each row (1.0 where there is one label)."""
    z = np.asarray(logits, dtype=np.float32)
    if z.ndim != 2 or z.shape[1] < 2:
        return np.ones(len(z))
    top = np.partition(softmax(z), -2, axis=1)[:, -2:]
    return top[:, 1] - top[:, 0]


def check_settings(manifest: _bundle.Manifest, variant: _bundle.Variant) -> tuple[_bundle.Variant, float]:
    """The variant whose file re-runs near ties and the margin, from ``variant.check``; a malformed record is one
    :class:`UserError` (``malformed manifest``)."""
    record = variant.check or {}
    margin, name = record.get("margin"), record.get("variant")
    valid = isinstance(margin, numbers.Real) and not isinstance(margin, bool) and 0 < margin <= 1
    if not valid or not isinstance(name, str) or name == variant.name:
        raise UserError(f"malformed manifest: variant {variant.name!r} has check {record!r}")
    if manifest.task not in TASKS:
        raise UserError(f"malformed manifest: a checked variant in a {manifest.task} bundle")
    return manifest.variant(name), float(margin)


class Check:
    """Re-runs near ties on a second session (thread-safe: no per-call state)."""

    def __init__(self, variant: _bundle.Variant, session: Any, margin: float, shrink_arena: bool = True) -> None:
        self.variant = variant
        self.margin = margin
        self._specs = _session.input_specs(session)
        self._run = _session.Runner(session, session.get_outputs()[0].name, 0, shrink_arena)

    def apply(self, logits: np.ndarray, encoded: Encoded, policy: BatchPolicy, max_length: int, pad_id: int) -> int:
        """Replace, in place, the rows of ``logits`` whose top gap is under the margin with the check file's logits
        (batched like any call, by length); returns how many rows were re-run."""
        rows = np.flatnonzero(top_gap(logits) < self.margin)
        for index, padded_len in plan(encoded.lengths[rows], policy, max_length):
            picked = rows[index]
            logits[picked] = self._run(make_feed(encoded, picked, padded_len, self._specs, pad_id))
        return len(rows)
