"""What the bench scores, per task of the task table: what a backend's predictions are, how they are scored against
the evaluation split (the task's primary metric first: :attr:`bertdeploy.tasks.TaskSpec.metric`), how two backends'
predictions are compared (the "= torch fp32" agreement column, defined once per task here) and how predictions
travel from a worker to the sweep (a file per block).

=====================  ===========================================  ===================================================
task                   predictions of one record                    agreement with another backend
=====================  ===========================================  ===================================================
text-classification    logits ``[labels]``                          same argmax (and max |logit diff|)
token-classification   entities ``[type, start, end]`` (character   the same *set* of entities (type + exact span) in
                       spans, aggregation ``first``)                the text; scores are not compared
question-answering     the best answer ``[start, end, text]``       the same answer span (start and end)
multiple-choice        logits ``[choices]``                         same choice (and max |logit diff|)
=====================  ===========================================  ===================================================

Token classification is scored on raw text: the test sentences joined with single spaces go in, and the entities'
character spans are matched exactly (type, start, end) against the gold word tags' spans of the same joined text
(:func:`bertdeploy.metrics.span_metrics`, micro F1). Question answering: EM / F1 (:mod:`bertdeploy.metrics_qa`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bertdeploy import tasks

TEXT, TOKENS, QA, CHOICE = "text-classification", "token-classification", "question-answering", "multiple-choice"
#: the aggregation strategy every backend's entities are taken with (the transformers pipeline's ``first``)
AGGREGATION = "first"


@dataclass(frozen=True)
class BenchTask:
    """How the bench treats one task."""

    name: str
    columns: tuple[tuple[str, str], ...]
    """(row key, title) of the metric columns, the task's primary metric first."""
    unit: str
    """What one record of the throughput (``seq/s``) is: ``text`` or ``question``."""
    peer: tuple[str, str] | None
    """The (backend, variant) the goals compare with: throughput ratio and ``agreement_peer`` (None: none)."""
    agreement: str
    """What agreement counts: "the share of ..." (for the report)."""
    export_agreement: bool = True
    """The export gate's parity counts agreement the same way (its record stands in where PyTorch did not run)."""
    deltas: tuple[str, ...] = ()
    """The metrics whose change against fp32 the peer section shows (default: the primary one)."""

    @property
    def spec(self) -> tasks.TaskSpec:
        return tasks.TASKS[self.name]

    @property
    def metric(self) -> str:
        """The primary metric's key (the column ``--pick`` and the plots read)."""
        return self.columns[0][0]

    @property
    def label(self) -> str:
        return self.columns[0][1]

    @property
    def delta_columns(self) -> tuple[tuple[str, str], ...]:
        """(key, title) of the metrics shown as a change against fp32."""
        keys = self.deltas or (self.metric,)
        return tuple(c for c in self.columns if c[0] in keys)

    @property
    def logits(self) -> bool:
        """Predictions are a logit array (agreement also reports the max |logit diff|)."""
        return self.name in (TEXT, CHOICE)


BENCH_TASKS: dict[str, BenchTask] = {
    TEXT: BenchTask(
        TEXT,
        (("accuracy", "accuracy"), ("f1_macro", "macro-F1")),
        "text",
        None,
        "texts whose label (argmax) equals the reference's",
    ),
    TOKENS: BenchTask(
        TOKENS,
        (("f1", tasks.TASKS[TOKENS].metric.label), ("entity_precision", "precision"), ("entity_recall", "recall")),
        "text",
        ("pipeline", "fp32"),
        "texts whose entity set (type + exact character span; scores not compared) equals the reference's",
        export_agreement=False,  # the gate counts per-token argmax agreement
    ),
    QA: BenchTask(
        QA,
        (("f1", tasks.TASKS[QA].metric.label), ("exact_match", "EM")),
        "question",
        ("pipeline", "fp32"),
        "questions whose answer span (start, end) equals the reference's",
        deltas=("f1", "exact_match"),
    ),
    CHOICE: BenchTask(
        CHOICE,
        (("accuracy", "accuracy"),),
        "question",
        ("torch", "fp32"),
        "questions whose chosen answer equals the reference's",
    ),
}


def bench_task(name: str | None) -> BenchTask:
    """The :class:`BenchTask` of a task name (None: text classification, results written before tasks)."""
    return BENCH_TASKS[name or tasks.DEFAULT]


def concat(parts: list[Any]) -> Any:
    """Join the predictions of consecutive calls (arrays or lists)."""
    if parts and isinstance(parts[0], np.ndarray):
        return np.concatenate(parts)
    return [p for part in parts for p in part]


def save(predictions: Any, path: str | Path) -> Path:
    """Write predictions next to ``path``: logits as ``.npy``, entities / answers as ``.json``."""
    path = Path(path)
    if isinstance(predictions, np.ndarray):
        path = path.with_suffix(".npy")
        np.save(path, predictions.astype(np.float32))
    else:
        path = path.with_suffix(".json")
        path.write_text(json.dumps(predictions, ensure_ascii=False), encoding="utf-8")
    return path


def load(path: str | Path) -> Any:
    path = Path(path)
    if path.suffix == ".npy":
        return np.load(path)
    return json.loads(path.read_text(encoding="utf-8"))


def score(task: str, predictions: Any, gold: list[Any], labels: list[str]) -> dict[str, Any]:
    """The scalar metrics of ``predictions`` against ``gold`` (label ids; gold entity spans; reference answer texts;
    the right choice)."""
    from bertdeploy.metrics import classification_metrics, span_metrics, summary
    from bertdeploy.metrics_qa import qa_metrics

    if task == TOKENS:  # (a row's "precision" is the engine's: fp32, int8 ...)
        m = span_metrics(gold, predictions)
        return {"f1": m["f1"], "entity_precision": m["precision"], "entity_recall": m["recall"]}
    if task == QA:
        m = qa_metrics([p[2] for p in predictions], gold)
        return {k: m[k] for k in ("f1", "exact_match")}
    if task == CHOICE:
        best = np.asarray(predictions).argmax(-1)
        return {"accuracy": float((best == np.asarray(gold)).mean()) if len(gold) else 0.0}
    m = classification_metrics(gold, np.asarray(predictions).argmax(-1).tolist(), labels)
    return {k: v for k, v in summary(m).items() if k != "n"}


def same(task: str, a: Any, b: Any) -> np.ndarray:
    """Per record: does prediction ``a`` equal ``b`` under the task's agreement rule."""
    if len(a) != len(b):
        raise ValueError("predictions of different lengths")
    if bench_task(task).logits:
        return np.asarray(a).argmax(-1) == np.asarray(b).argmax(-1)
    if task == TOKENS:
        return np.asarray([{tuple(e) for e in x} == {tuple(e) for e in y} for x, y in zip(a, b)], dtype=bool)
    return np.asarray([tuple(x[:2]) == tuple(y[:2]) for x, y in zip(a, b)], dtype=bool)


def agreement(task: str, a: Any, b: Any) -> tuple[float | None, float | None]:
    """(share of records where ``a`` equals ``b``, max |logit diff| for logit tasks); (None, None) when the two
    cannot be compared (different evaluation records)."""
    if len(a) != len(b) or (bench_task(task).logits and np.shape(a) != np.shape(b)):
        return None, None
    hits = same(task, a, b)
    share = float(hits.mean()) if len(hits) else 1.0
    diff = float(np.abs(np.asarray(a) - np.asarray(b)).max()) if bench_task(task).logits and len(a) else None
    return share, diff
