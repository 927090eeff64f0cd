"""The validation gate: logits of PyTorch and of each ONNX artifact on the same length-sorted, per-batch padded
rows (cut by the runtime's own batcher, :mod:`bertdeploy.runtime.batching`); parity (max |logit diff|, argmax
agreement) on the first K rows and the task's metrics on the whole split; and the accept / reject rule per variant,
whose thresholds come from the variant table and whose metric comes from the task table.

Text classification: one logit row per text, argmax agreement, accuracy / F1. Token classification: one logit row
per *token* (kept flat, like the runtime's tagger), agreement of the argmax over real tokens (no special or
padding tokens), and entity F1 (seqeval) on per-word tags taken from each word's first sub-token
(:func:`bertdeploy.metrics.word_tags`, the rule training scores with), their tags decoded as training and the runtime
decode them (:func:`bertdeploy.runtime.entities.best_tags`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bertdeploy import variants
from bertdeploy.exporter.batches import MODEL_INPUTS, Batches, cut, runtime_encoder

__all__ = ["MODEL_INPUTS", "Batches", "judge", "make_batches", "onnx_logits", "parity", "scores", "torch_logits"]


def make_batches(tokenizer: Any, texts: list[str], max_length: int, batch_size: int = 64) -> Batches:
    """Text classification: the texts encoded and cut as ``Classifier.predict`` does."""
    encoder = runtime_encoder(tokenizer, max_length)
    return cut(encoder.encode(list(texts)), encoder.pad_id, max_length, batch_size)


def make_token_batches(tokenizer: Any, words: list[list[str]], max_length: int, batch_size: int = 64) -> Batches:
    """Token classification: the pre-split words of each sentence encoded as training encodes them
    (``is_pretokenized``, truncated to ``max_length``), with each token's word id, cut like :func:`make_batches`."""
    encoder = runtime_encoder(tokenizer, max_length)
    encoded = encoder.encode_words(words)
    return cut(encoded, encoder.pad_id, max_length, batch_size, tokens=encoded, kind="tokens")


def _outputs(out: Any) -> np.ndarray:
    """The model's logits as one array: QA's start / end logits stacked as a last axis of 2."""
    if hasattr(out, "start_logits"):
        return np.stack([out.start_logits.float().numpy(), out.end_logits.float().numpy()], axis=-1)
    return out.logits.float().numpy()


def torch_logits(model: Any, batches: Batches) -> np.ndarray:
    """Reference logits from the PyTorch model (CPU, float32)."""
    import inspect

    import torch

    accepted = set(inspect.signature(model.forward).parameters)
    out: np.ndarray | None = None
    with torch.inference_mode():
        for feed, idx in zip(batches.feeds, batches.index, strict=True):
            args = {k: torch.from_numpy(v) for k, v in feed.items() if k in accepted}
            logits = _outputs(model(**args))
            if out is None:
                out = batches.empty(logits.shape[-1])
            batches.store(out, idx, logits)
    return out if out is not None else np.zeros((0, 0), dtype=np.float32)


def onnx_logits(
    path: Path, batches: Batches, threads: int | None = None, provider: str = "cpu", hint: str | None = None
) -> np.ndarray:
    """Logits of one ONNX file on ``provider`` (ORT's CPU EP, or the OpenVINO EP with precision ``hint``), in a
    session built as the runtime builds it (the same ORT graph optimizations and provider settings,
    :class:`bertdeploy.runtime.session.SessionConfig` defaults): the gate judges the graph that will be served."""
    import onnxruntime as ort

    from bertdeploy.runtime.session import SessionConfig, create_session, session_options

    config = SessionConfig(threads=threads)
    if provider != "cpu":  # checked to have attached: a gate that ran on the CPU EP would judge the wrong engine
        session = create_session(path, "cpu", 0, config, False, provider=provider, hint=hint)
    else:
        options = session_options(config)
        options.log_severity_level = 3
        cpu_ep = ["CPUExecutionProvider"]
        session = ort.InferenceSession(
            str(path), options, providers=cpu_ep, disabled_optimizers=list(config.disabled_optimizers)
        )
    names = [i.name for i in session.get_inputs()]
    out: np.ndarray | None = None
    for feed, idx in zip(batches.feeds, batches.index, strict=True):
        shape = feed["input_ids"].shape
        inputs = {n: feed[n] if n in feed else np.zeros(shape, dtype=np.int64) for n in names}
        results = session.run(None, inputs)
        logits = np.asarray(results[0] if len(results) == 1 else np.stack(results[:2], axis=-1), dtype=np.float32)
        if out is None:
            out = batches.empty(logits.shape[-1])
        batches.store(out, idx, logits)
    return out if out is not None else np.zeros((0, 0), dtype=np.float32)


def parity(reference: np.ndarray, logits: np.ndarray, rows: int, batches: Batches | None = None) -> dict[str, Any]:
    """max / mean |logit diff| and argmax agreement on the first ``rows`` rows (token classification: on the real
    tokens of those rows; question answering: :func:`bertdeploy.exporter.gate_qa.span_parity`)."""
    if batches is not None and batches.kind == "spans":
        from bertdeploy.exporter.gate_qa import span_parity

        return span_parity(reference, logits, rows, batches)
    if batches is not None and batches.tokens is not None:
        keep = batches.real_tokens(rows)
        ref, got = reference[keep], logits[keep]
    else:
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


def scores(
    logits: np.ndarray,
    label_ids: list[Any] | None,
    labels: list[str],
    batches: Batches | None = None,
    prior: Any = None,
) -> dict[str, Any]:
    """Accuracy, macro-F1 … of ``logits`` against the labels (empty when the rows are unlabelled); token
    classification: entity F1 / precision / recall, per type, and token accuracy on per-word tags (decoded with
    ``prior``, the training tags' :class:`~bertdeploy.runtime.entities.TagPrior`, as the runtime decodes)."""
    if label_ids is None:
        return {}
    from bertdeploy.metrics import classification_metrics, summary

    if batches is not None and batches.kind == "spans":
        from bertdeploy.exporter.gate_qa import span_scores

        return span_scores(logits, label_ids, batches)
    if batches is not None and batches.tokens is not None:
        return token_scores(logits, label_ids, labels, batches, prior)
    m = classification_metrics(label_ids, logits.argmax(1).tolist(), labels)
    return {**summary(m), "per_class": m["per_class"], "confusion_matrix": m["confusion_matrix"]}


def token_scores(
    logits: np.ndarray, tag_ids: list[list[int]], labels: list[str], batches: Batches, prior: Any = None
) -> dict:
    """Entity-level scores of per-token ``logits`` against the gold tags of each sentence's words."""
    from bertdeploy.metrics import entity_metrics, word_tags
    from bertdeploy.runtime.entities import best_tags

    tok = batches.tokens
    outside = labels.index("O") if "O" in labels else 0
    gold, pred = [], []
    for i, tags in enumerate(tag_ids):
        start = int(tok.offsets[i])
        positions = range(start, start + int(tok.lengths[i]))
        first = np.asarray(word_tags(tok.words[start : positions.stop].tolist(), positions, len(tags), -1))
        words = np.full(len(tags), outside, dtype=np.int64)  # a word max_length cut off counts as a miss
        reached = first >= 0
        words[reached] = best_tags(logits[first[reached]], labels, prior=prior)  # decoded as training decodes
        gold.append([labels[t] for t in tags])
        pred.append([labels[t] for t in words])
    return entity_metrics(gold, pred)


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
    metric: str = "accuracy",
) -> Verdict:
    """Accept or reject the variant ``name`` by the rule of its :class:`~bertdeploy.variants.VariantSpec`.

    Float variants: argmax agreement with PyTorch >= the table's ``min_agreement`` (or the override). Variants
    gated on accuracy (int8): accuracy (percentage points) may drop at most ``max_accuracy_drop`` below
    PyTorch's on the eval split; without labelled rows the agreement must be >= 1 - drop/100 (a sufficient
    condition, since |accuracy difference| <= disagreement rate). Non-finite logits always reject.
    """
    spec = variants.get(name)
    if not par.get("finite", True):
        return Verdict(False, "non-finite logits (NaN/inf)")
    agreement = par["agreement"]
    if spec.min_agreement is None:
        return _judge_accuracy(agreement, metrics, baseline, max_accuracy_drop, metric)
    need = (min_agreement or {}).get(name, spec.min_agreement)
    check = {"min_agreement": need}
    if agreement < need:
        return Verdict(False, f"agreement {agreement:.2%} < {need:.2%}", check)
    return Verdict(True, "", check)


def _judge_accuracy(
    agreement: float, metrics: dict[str, Any], baseline: dict[str, Any], max_drop: float, metric: str = "accuracy"
) -> Verdict:
    if metrics and baseline:
        # rounded: 100 * (0.925 - 0.915) is 1.0000000000000009 in floating point, and 1.0 must pass a 1.0 limit
        drop = round(100.0 * (baseline[metric] - metrics[metric]), 9)
        check = {f"{metric}_drop_points": round(drop, 3), "max_accuracy_drop": max_drop, "metric": metric}
        if metric == "accuracy":
            check = {"accuracy_drop_points": round(drop, 3), "max_accuracy_drop": max_drop}
        if drop > max_drop:
            return Verdict(False, f"{metric} drop {drop:.2f} points > {max_drop:g}", check)
        return Verdict(True, "", check)
    need = 1.0 - max_drop / 100.0
    check = {"min_agreement": need}
    if agreement < need:
        return Verdict(False, f"agreement {agreement:.2%} < {need:.2%} (no labelled data)", check)
    return Verdict(True, "", check)


def thresholds(min_agreement: dict[str, float] | None = None) -> dict[str, float]:
    """The agreement thresholds in force, per variant judged on agreement (for the manifest)."""
    table = {v.name: v.min_agreement for v in variants.VARIANT_TABLE if v.min_agreement is not None}
    return {**table, **(min_agreement or {})}
