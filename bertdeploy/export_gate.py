"""The validation gate: logits of PyTorch and of each ONNX artifact on the same length-sorted, per-batch padded
rows; parity (max |logit diff|, argmax agreement) on the first K rows and accuracy / F1 on the whole split; and
the accept / reject rule per variant."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

#: minimum argmax agreement with PyTorch per variant (int8 is gated on the accuracy drop instead)
MIN_AGREEMENT = {"fp32": 0.999, "O1": 0.999, "O2": 0.999, "O3": 0.999, "fp16": 0.99}
INT8 = ("qint8", "qint8_static")
MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


@dataclass
class Batches:
    """Tokenized rows cut into length-sorted batches; ``index`` maps each batch row back to its input row."""

    feeds: list[dict[str, np.ndarray]]
    index: list[np.ndarray]
    n: int


def make_batches(tokenizer: Any, texts: list[str], max_length: int, batch_size: int = 64) -> Batches:
    """Sort rows by token length and pad each batch only to its longest row (seconds, not minutes, on 2k rows)."""
    texts = list(texts)
    lengths = np.array([len(ids) for ids in tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]])
    order = np.argsort(lengths, kind="stable")
    feeds, index = [], []
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        enc = tokenizer(
            [texts[i] for i in idx], truncation=True, max_length=max_length, padding="longest", return_tensors="np"
        )
        feeds.append({k: np.asarray(v, dtype=np.int64) for k, v in enc.items() if k in MODEL_INPUTS})
        index.append(idx)
    return Batches(feeds, index, len(texts))


def torch_logits(model: Any, batches: Batches) -> np.ndarray:
    """Reference logits from the PyTorch model (CPU, float32)."""
    import inspect

    import torch

    accepted = set(inspect.signature(model.forward).parameters)
    out: np.ndarray | None = None
    with torch.inference_mode():
        for feed, idx in zip(batches.feeds, batches.index, strict=True):
            args = {k: torch.from_numpy(v) for k, v in feed.items() if k in accepted}
            logits = model(**args).logits.float().numpy()
            if out is None:
                out = np.zeros((batches.n, logits.shape[1]), dtype=np.float32)
            out[idx] = logits
    return out if out is not None else np.zeros((0, 0), dtype=np.float32)


def onnx_logits(path: Path, batches: Batches, threads: int | None = None) -> np.ndarray:
    """Logits of one ONNX file through a plain ``onnxruntime.InferenceSession`` on the CPU provider."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    out: np.ndarray | None = None
    for feed, idx in zip(batches.feeds, batches.index, strict=True):
        shape = feed["input_ids"].shape
        inputs = {n: feed[n] if n in feed else np.zeros(shape, dtype=np.int64) for n in names}
        logits = np.asarray(session.run(None, inputs)[0], dtype=np.float32)
        if out is None:
            out = np.zeros((batches.n, logits.shape[1]), dtype=np.float32)
        out[idx] = logits
    return out if out is not None else np.zeros((0, 0), dtype=np.float32)


def parity(reference: np.ndarray, logits: np.ndarray, rows: int) -> dict[str, Any]:
    """max / mean |logit diff| and argmax agreement on the first ``rows`` rows."""
    ref, got = reference[:rows], logits[:rows]
    finite = bool(np.isfinite(got).all())
    diff = np.abs(ref - got) if finite else np.full_like(ref, np.inf)
    return {
        "rows": int(len(ref)),
        "max_abs_diff": float(diff.max()) if diff.size else 0.0,
        "mean_abs_diff": float(diff.mean()) if diff.size else 0.0,
        "agreement": float((ref.argmax(1) == got.argmax(1)).mean()) if len(ref) else 1.0,
        "finite": finite,
    }


def scores(logits: np.ndarray, label_ids: list[int] | None, labels: list[str]) -> dict[str, Any]:
    """Accuracy, macro-F1 … of ``logits`` against the labels (empty when the rows are unlabelled)."""
    if label_ids is None:
        return {}
    from bertdeploy.metrics import classification_metrics, summary

    m = classification_metrics(label_ids, logits.argmax(1).tolist(), labels)
    return {**summary(m), "per_class": m["per_class"], "confusion_matrix": m["confusion_matrix"]}


@dataclass
class Verdict:
    accepted: bool
    reason: str = ""
    checks: dict[str, Any] = field(default_factory=dict)


def judge(
    name: str,
    par: dict[str, Any],
    metrics: dict[str, Any],
    baseline: dict[str, Any],
    max_accuracy_drop: float,
    min_agreement: dict[str, float] | None = None,
) -> Verdict:
    """Accept or reject one variant.

    fp32 / O1-O3 / fp16: argmax agreement with PyTorch >= ``min_agreement[name]``. int8: accuracy (percentage
    points) may drop at most ``max_accuracy_drop`` below PyTorch's on the eval split; without labelled rows the
    agreement must be >= 1 - drop/100 (a sufficient condition, since |accuracy difference| <= disagreement rate).
    Non-finite logits always reject.
    """
    thresholds = {**MIN_AGREEMENT, **(min_agreement or {})}
    if not par.get("finite", True):
        return Verdict(False, "non-finite logits (NaN/inf)")
    agreement = par["agreement"]
    if name in INT8:
        if metrics and baseline:
            # rounded: 100 * (0.925 - 0.915) is 1.0000000000000009 in floating point, and 1.0 must pass a 1.0 limit
            drop = round(100.0 * (baseline["accuracy"] - metrics["accuracy"]), 9)
            check = {"accuracy_drop_points": round(drop, 3), "max_accuracy_drop": max_accuracy_drop}
            if drop > max_accuracy_drop:
                return Verdict(False, f"accuracy drop {drop:.2f} points > {max_accuracy_drop:g}", check)
            return Verdict(True, "", check)
        need = 1.0 - max_accuracy_drop / 100.0
        check = {"min_agreement": need}
        if agreement < need:
            return Verdict(False, f"agreement {agreement:.2%} < {need:.2%} (no labelled data)", check)
        return Verdict(True, "", check)
    need = thresholds.get(name, MIN_AGREEMENT["fp32"])
    check = {"min_agreement": need}
    if agreement < need:
        return Verdict(False, f"agreement {agreement:.2%} < {need:.2%}", check)
    return Verdict(True, "", check)
