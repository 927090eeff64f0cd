"""The tasks' metrics. Text classification with scikit-learn: accuracy, precision / recall / F1 (macro, micro,
weighted), per-class scores and the confusion matrix. Token classification with seqeval: entity-level precision /
recall / F1 (micro over entity types, the conlleval rules) and per type, plus token accuracy; and the one rule that
turns per-token predictions into per-word tags (:func:`word_tags`), shared by training and the export gate; and the
character-span scorer of entities found in raw text (:func:`bio_chunks`, :func:`word_spans`, :func:`gold_spans`,
:func:`span_metrics`: numpy / standard library only), which the bench scores the runtime's entities with.
Imports only numpy + scikit-learn / seqeval (no torch)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
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


# ---------------------------------------------------------------- entities as character spans (no seqeval)

#: one entity: (type, start, end) with ``[start, end)`` character offsets
Span = tuple[str, int, int]


def _split_tag(tag: str) -> tuple[str, str]:
    """(prefix letter, type) as seqeval's default mode reads a tag: ``B-PER`` -> (B, PER), ``O`` -> (O, _)."""
    return tag[:1], tag[1:].split("-", maxsplit=1)[-1] or "_"


def _chunk_ends(prev: str, tag: str, prev_type: str, kind: str) -> bool:
    if prev in ("E", "S") or (prev in ("B", "I") and tag in ("B", "S", "O")):
        return True
    return prev not in ("O", ".") and prev_type != kind


def _chunk_starts(prev: str, tag: str, prev_type: str, kind: str) -> bool:
    if tag in ("B", "S") or (prev in ("E", "S", "O") and tag in ("E", "I")):
        return True
    return tag not in ("O", ".") and prev_type != kind


def bio_chunks(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """The entities of one tag sequence as ``(type, first, last)`` positions (inclusive), with the rules of seqeval's
    default (conlleval-compatible) mode: an ``I-X`` after ``O`` or after another type starts an entity, a change of
    type ends one; IOBES prefixes are read too."""
    chunks: list[tuple[str, int, int]] = []
    prev, prev_type, begin = "O", "", 0
    for i, chunk in enumerate([*tags, "O"]):
        tag, kind = _split_tag(chunk)
        if _chunk_ends(prev, tag, prev_type, kind):
            chunks.append((prev_type, begin, i - 1))
        if _chunk_starts(prev, tag, prev_type, kind):
            begin = i
        prev, prev_type = tag, kind
    return chunks


def word_spans(words: Sequence[str], sep: str = " ") -> list[tuple[int, int]]:
    """``[start, end)`` of each word in ``sep.join(words)``."""
    out, pos = [], 0
    for w in words:
        out.append((pos, pos + len(w)))
        pos += len(w) + len(sep)
    return out


def gold_spans(words: Sequence[str], tags: Sequence[str], sep: str = " ") -> list[Span]:
    """The entities of a tagged sentence as character spans of ``sep.join(words)``: ``(type, start, end)``."""
    if len(words) != len(tags):
        raise ValueError("one tag per word is needed")
    spans = word_spans(words, sep)
    return [(kind, spans[a][0], spans[b][1]) for kind, a, b in bio_chunks(tags)]


def span_metrics(gold: Sequence[Iterable[Span]], pred: Sequence[Iterable[Span]]) -> dict[str, Any]:
    """Entity-level micro precision / recall / F1 of predicted character spans against the gold ones, text by text:
    an entity counts only on an exact (type, start, end) match. With spans taken from word tags on both sides this
    is seqeval's entity F1 (tested); ``per_type`` as :func:`entity_metrics` gives it."""
    if len(gold) != len(pred):
        raise ValueError("one list of predicted spans per text is needed")
    counts: dict[str, list[int]] = {}  # type -> [true positives, predicted, gold]
    for g, p in zip(gold, pred):
        gs, ps = {tuple(x) for x in g}, {tuple(x) for x in p}
        for kind, items in ((0, gs & ps), (1, ps), (2, gs)):
            for span in items:
                counts.setdefault(str(span[0]), [0, 0, 0])[kind] += 1
    totals = [sum(c[i] for c in counts.values()) for i in range(3)]
    names = ("precision", "recall", "f1")
    out: dict[str, Any] = dict(zip(names, _prf(*totals)))
    out["per_type"] = {kind: {**dict(zip(names, _prf(*c))), "support": c[2]} for kind, c in sorted(counts.items())}
    out["n"] = len(gold)
    return out


def _prf(tp: int, predicted: int, actual: int) -> tuple[float, float, float]:
    precision = tp / predicted if predicted else 0.0
    recall = tp / actual if actual else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1
