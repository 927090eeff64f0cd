"""The tasks' metrics. Text classification with scikit-learn: accuracy, precision / recall / F1 (macro, micro,
weighted), per-class scores and the confusion matrix. Token classification with seqeval: entity-level precision /
recall / F1 (micro over entity types, the conlleval rules) and per type, plus token accuracy; and the one rule that
turns per-token predictions into per-word tags (:func:`word_tags`), shared by training and the export gate.
Imports only numpy + scikit-learn / seqeval (no torch)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def classification_metrics(y_true: Sequence[int], y_pred: Sequence[int], labels: Sequence[str]) -> dict[str, Any]:
    """All the scores the tables print, for integer label ids ``0..len(labels)-1``.

    Micro-F1 equals accuracy for single-label classification; macro-F1 averages the classes equally, so it
    drops when rare classes are missed. Both are reported because they answer different questions.
    """
    from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    ids = list(range(len(labels)))
    out: dict[str, Any] = {"accuracy": float(accuracy_score(y_true, y_pred)) if len(y_true) else 0.0}
    for avg in ("macro", "micro", "weighted"):
        p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, labels=ids, average=avg, zero_division=0)
        out[f"precision_{avg}"] = float(p)
        out[f"recall_{avg}"] = float(r)
        out[f"f1_{avg}"] = float(f)
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=ids, average=None, zero_division=0)
    out["per_class"] = {
        name: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
        for i, name in enumerate(labels)
    }
    out["confusion_matrix"] = confusion_matrix(y_true, y_pred, labels=ids).tolist()
    out["n"] = int(len(y_true))
    return out


def summary(metrics: dict[str, Any]) -> dict[str, float]:
    """The scalar part of :func:`classification_metrics` (drops per-class and the matrix)."""
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def word_tags(word_ids: Sequence[int], token_tags: Sequence[int], n_words: int, outside: int = 0) -> list[int]:
    """One tag id per word from per-token tag ids: a word takes its **first** sub-token's tag (the token it was
    labelled on in training); a word with no token (cut by ``max_length``) gets ``outside`` (the ``O`` id), so it
    counts as a miss, never silently disappears. ``word_ids`` is -1 (or None) for special and padding tokens."""
    out = [-1] * n_words
    for w, tag in zip(word_ids, token_tags):
        if w is not None and w >= 0 and w < n_words and out[w] < 0:
            out[w] = int(tag)
    return [outside if t < 0 else t for t in out]


def entity_metrics(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> dict[str, Any]:
    """Entity-level scores of BIO tag sequences, as seqeval computes them (its default, conlleval-compatible mode):
    ``f1`` / ``precision`` / ``recall`` (micro over entity types), ``token_accuracy``, ``per_type`` and ``n``."""
    from seqeval.metrics import classification_report, f1_score, precision_score, recall_score

    gold = [list(s) for s in gold]
    pred = [list(s) for s in pred]
    if len(gold) != len(pred) or any(len(a) != len(b) for a, b in zip(gold, pred)):
        raise ValueError("gold and predicted tag sequences differ in shape")
    tokens = sum(len(s) for s in gold)
    right = sum(a == b for g, p in zip(gold, pred) for a, b in zip(g, p))
    out: dict[str, Any] = {
        "f1": float(f1_score(gold, pred, zero_division=0)),
        "precision": float(precision_score(gold, pred, zero_division=0)),
        "recall": float(recall_score(gold, pred, zero_division=0)),
        "token_accuracy": right / tokens if tokens else 0.0,
    }
    report = classification_report(gold, pred, output_dict=True, zero_division=0)
    out["per_type"] = {
        name: {
            "precision": float(r["precision"]),
            "recall": float(r["recall"]),
            "f1": float(r["f1-score"]),
            "support": int(r["support"]),
        }  # fmt: skip
        for name, r in report.items()
        if not name.endswith(" avg")
    }
    out["n"] = len(gold)
    return out
