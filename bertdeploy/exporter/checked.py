"""Checked variants at export (:attr:`bertdeploy.variants.VariantSpec.check`): the margin under which a text's
int8 answer is re-run in fp32, calibrated on the evaluation rows, and the logits the gate then judges.

A text whose top-two softmax probabilities under the fast file are closer than the margin is re-run on the check
file. The margin is the smallest of :data:`MARGINS` under which the even-numbered evaluation rows reach
:data:`TARGET` agreement with PyTorch; the odd rows were not looked at to choose it, and their agreement is recorded
beside it (``check.held_out_agreement``). The gate then judges all rows, as for every variant.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bertdeploy.runtime.checked import TASKS, top_gap

__all__ = ["TASKS", "calibrate", "checked_logits", "combine", "top_gap"]

#: the margins tried, smallest first (a grid, not the exact gap of the last disagreement: headroom for new texts)
MARGINS = (0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5)
#: the agreement with PyTorch the margin is chosen to reach on the calibration rows (the gate's bar is 0.99)
TARGET = 0.995


def combine(fast: np.ndarray, slow: np.ndarray, margin: float) -> tuple[np.ndarray, np.ndarray]:
    """``fast`` with the rows whose top gap is under ``margin`` taken from ``slow``; and which rows those are."""
    rerun = top_gap(fast) < margin
    return np.where(rerun[:, None], slow, fast), rerun


def _agreement(logits: np.ndarray, ref: np.ndarray) -> float:
    return float((logits.argmax(axis=1) == ref.argmax(axis=1)).mean()) if len(ref) else 1.0


def calibrate(fast: np.ndarray, slow: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
    """The margin for a checked variant (see the module docstring) and the combined logits of every row; the record
    says the margin, the share of rows re-run and the agreements on the calibration and the held-out rows."""
    calib, held = slice(0, None, 2), slice(1, None, 2)
    margin = MARGINS[-1]
    for m in MARGINS:
        if _agreement(combine(fast[calib], slow[calib], m)[0], ref[calib]) >= TARGET:
            margin = m
            break
    logits, rerun = combine(fast, slow, margin)
    record = {
        "margin": margin,
        "target": TARGET,
        "rerun_fraction": round(float(rerun.mean()), 4) if len(rerun) else 0.0,
        "calibration_agreement": round(_agreement(logits[calib], ref[calib]), 4),
        "held_out_agreement": round(_agreement(logits[held], ref[held]), 4),
        "fast_agreement": round(_agreement(fast, ref), 4),
    }
    return logits, record


def checked_logits(spec: Any, fast: np.ndarray, ctx: Any, ref: Any) -> tuple[np.ndarray, dict[str, Any]]:
    """The logits the gate judges for the checked variant ``spec`` (its file's logits ``fast``, near ties from the
    accepted file of ``spec.check``) and the manifest's ``check`` record."""
    from bertdeploy.exporter import gate

    slow = gate.onnx_logits(ctx.accepted[spec.check], ref.batches)  # accepted: the builder checked
    logits, record = calibrate(fast, slow, ref.logits)
    return logits, {"variant": spec.check, **record}
