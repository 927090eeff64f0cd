"""``predict_file`` for a question-answering or multiple-choice bundle, and for the two-stage reader (a selection
bundle ``then`` a QA bundle: :mod:`bertdeploy.runtime.two_stage`).

The input is read whole and checked first (:mod:`bertdeploy.runtime.qa_records`: one error naming the record,
before any model runs, nothing written); then the questions are predicted ``chunk_size`` at a time and written as
rows:

* QA: ``{"row", "id", "answer", "score", "start", "end"}`` (character offsets into the context); with
  ``top_k > 1`` up to ``top_k`` rows per question, best first, with their ``rank``;
* MC: ``{"row", "id", "label", "score"}`` (the choice's index and probability);
* two-stage: the QA row of the answer in the selected paragraph, plus ``paragraph`` (its index among the
  candidates), ``paragraph_score`` and ``paragraph_id`` (its id in ``context.json``, when the input has ids).

``row`` is the question's 1-based number in the input, ``id`` its id (null without one). When the input has gold
answers / labels the result's ``metrics`` hold EM / F1 (as :mod:`bertdeploy.metrics_qa` computes them), choice
accuracy, and for the two-stage reader the selection accuracy and end-to-end EM / F1, as the course report counts.
"""

from __future__ import annotations

import csv
import json
import time
from dataclasses import dataclass, field
from typing import IO, Any

from bertdeploy.errors import RecordError, UserError
from bertdeploy.metrics_qa import qa_metrics
from bertdeploy.runtime.filejob import PredictFileResult, ProgressFn, open_output
from bertdeploy.runtime.options import LoadOptions
from bertdeploy.runtime.qa_records import MC, QA, SELECT, QARecord
from bertdeploy.runtime.reader import check_params
from bertdeploy.runtime.writers import DECIMALS

QUESTION_TASKS = (QA, MC)


@dataclass(frozen=True)
class QuestionOptions:
    """How questions are answered: the transformers question-answering pipeline's parameters, its meaning."""

    top_k: int = 1
    """Answers per question (QA), best first."""
    max_answer_len: int | None = None
    """The longest answer, in tokens (None: the bundle's, :attr:`~bertdeploy.runtime.reader.Reader.max_answer_len`)."""
    doc_stride: int | None = None
    """Tokens shared by consecutive windows of a long context (None: the bundle's, ``min(max_length // 2, 128)``)."""
    handle_impossible_answer: bool = False
    """Let the empty answer (``[CLS]``) compete with the spans."""

    def __post_init__(self) -> None:
        check_params(self.top_k, 1 if self.max_answer_len is None else self.max_answer_len)
        stride = self.doc_stride
        if stride is not None and (not isinstance(stride, int) or isinstance(stride, bool) or stride < 0):
            raise UserError(f"doc_stride must be an integer >= 0, got {stride!r}")


@dataclass(frozen=True)
class QAJob:
    """One checked ``predict_file`` call of a QA / MC bundle or of the two-stage reader."""

    bundle: str
    input: str
    output: str
    fmt: str
    ofmt: str
    kind: str
    then: str | None = None
    id_column: str | None = None
    chunk_size: int = 256
    questions: QuestionOptions = field(default_factory=QuestionOptions)

    def __post_init__(self) -> None:
        if self.kind == SELECT and self.top_k != 1:
            raise UserError("the two-stage reader answers one span per question (top_k 1)")
        if self.kind == MC and self.questions != QuestionOptions():
            raise UserError("top_k / max_answer_len / doc_stride / handle_impossible_answer apply to question "
                            f"answering; {self.bundle} is a multiple-choice bundle")  # fmt: skip

    @property
    def top_k(self) -> int:
        return self.questions.top_k

    @property
    def columns(self) -> list[str]:
        if self.kind == MC:
            return ["row", "id", "label", "score"]
        ranked = ["rank"] if self.top_k > 1 else []
        extra = ["paragraph", "paragraph_score", "paragraph_id"] if self.kind == SELECT else []
        return ["row", "id", *ranked, "answer", "score", "start", "end", *extra]


class QAModels:
    """The loaded head(s) of a job: a ``Reader``, a ``Chooser``, or both as a
    :class:`~bertdeploy.runtime.two_stage.TwoStageReader`."""

    def __init__(self, job: QAJob, options: LoadOptions) -> None:
        from bertdeploy.runtime.loader import load_with
        from bertdeploy.runtime.two_stage import OverlapSelector, TwoStageReader, is_overlap

        self.job = job
        lexical = is_overlap(job.bundle, job.then)
        self.heads = [OverlapSelector() if lexical else load_with(job.bundle, options)]
        self.two_stage = None
        if job.kind == SELECT:
            self.heads.append(load_with(job.then, options))
            self.two_stage = TwoStageReader(*self.heads)  # checks: a multiple-choice, then a QA bundle
        if job.kind != MC:  # a bad stride fails before any question is read
            self.heads[-1].encoder_for(job.questions.doc_stride)
        model = self.heads[-1] if lexical else self.heads[0]
        self.variant, self.providers = model.variant.name, model.providers

    def close(self) -> None:
        for head in self.heads:
            head.close()

    def rows(self, records: list[QARecord]) -> tuple[list[dict[str, Any]], int]:
        """The output rows of ``records`` and how many of their contexts needed several windows (QA)."""
        head, q = self.heads[0], self.job.questions
        if self.job.kind == MC:
            found = head.predict([(r.question, list(r.choices)) for r in records])
            return [_row(r, {"label": c.label, "score": c.score}) for r, c in zip(records, found)], 0
        params = {"max_answer_len": q.max_answer_len, "handle_impossible_answer": q.handle_impossible_answer}
        if self.two_stage is None:
            try:
                encoded = head.encode_with([(r.question, r.context) for r in records], q.doc_stride)
            except RecordError as e:  # named by its place in the file
                r = records[e.index]
                named = f" (id {r.id!r})" if r.id is not None else ""
                raise UserError(f"{self.job.input}: record {r.row}{named}: {e.reason}") from None
            answers = head.decode(head.forward(encoded), q.top_k, **params)
            return [row for r, a in zip(records, answers) for row in _qa_rows(r, a, q.top_k)], encoded.truncated
        questions = [{"question": r.question, "paragraphs": r.choices} for r in records]
        found = self.two_stage.predict(questions, doc_stride=q.doc_stride, **params)
        rows = []
        for r, f in zip(records, found):
            values = {**f.to_dict(), "paragraph_id": r.paragraph_ids[f.paragraph] if r.paragraph_ids else None}
            rows.append(_row(r, values))
        return rows, 0


def _row(record: QARecord, values: dict[str, Any]) -> dict[str, Any]:
    row = {"row": record.row, "id": record.id, **values}
    for key in ("score", "paragraph_score"):
        if key in row:
            row[key] = round(float(row[key]), DECIMALS)
    return row


def _qa_rows(record: QARecord, found: Any, top_k: int) -> list[dict[str, Any]]:
    if top_k == 1:
        return [_row(record, found.to_dict())]
    return [_row(record, {"rank": i, **a.to_dict()}) for i, a in enumerate(found, 1)]


@dataclass
class Scores:
    """Gold answers / labels against the predictions, where the input has them."""

    predicted: list[str] = field(default_factory=list)
    references: list[list[str]] = field(default_factory=list)
    right: int = 0
    labelled: int = 0

    def add(self, records: list[QARecord], rows: list[dict[str, Any]], kind: str) -> None:
        best = {row["row"]: row for row in reversed(rows)}  # the first row of a question is its best answer
        for r in records:
            row = best.get(r.row)
            if r.label is not None and kind != QA:
                self.labelled += 1
                self.right += row is not None and row["label" if kind == MC else "paragraph"] == r.label
            if r.answers is not None and kind != MC:
                self.predicted.append(row["answer"] if row is not None else "")
                self.references.append(list(r.answers))

    def metrics(self, kind: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.labelled:
            key = "accuracy" if kind == MC else "selection_accuracy"
            out.update({key: self.right / self.labelled, "labelled": self.labelled})
        if self.references:
            scored = qa_metrics(self.predicted, self.references)
            out.update({k: v for k, v in scored.items() if k in ("exact_match", "f1")}, answered=len(self.references))
        return out


def write_rows(f: IO[str], fmt: str, columns: list[str], rows: list[dict[str, Any]], header: bool) -> None:
    """``rows`` as jsonl lines, or csv / tsv records (``columns``; the header when ``header``)."""
    if fmt == "jsonl":
        if rows:
            f.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        return
    writer = csv.DictWriter(f, columns, delimiter="," if fmt == "csv" else "\t", lineterminator="\n")
    if header:
        writer.writeheader()
    writer.writerows(rows)


def predict_qa_local(
    job: QAJob, records: list[QARecord], options: LoadOptions, progress: ProgressFn | None
) -> PredictFileResult:
    """The local engine: ``records`` (read and checked already) through the job's model(s) into its output."""
    models = QAModels(job, options)
    result = PredictFileResult(job.input, job.output, "local", models.variant, models.providers, task=job.kind)
    scores = Scores()
    start = time.perf_counter()
    try:
        with open_output(job.output) as f:
            for i in range(0, len(records), job.chunk_size):
                chunk = records[i : i + job.chunk_size]
                rows, windowed = models.rows(chunk)
                write_rows(f, job.ofmt, job.columns, rows, header=i == 0)
                scores.add(chunk, rows, job.kind)
                result.rows += len(chunk)
                result.truncated += windowed
                if progress is not None:
                    progress(result.rows, len(records))
    finally:
        models.close()
    result.seconds = time.perf_counter() - start
    result.metrics = scores.metrics(job.kind)
    return result
