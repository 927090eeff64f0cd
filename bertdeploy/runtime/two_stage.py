"""The course report's two-stage reader as one object: a multiple-choice bundle picks, among a question's candidate
paragraphs, the one that holds the answer (context selection), then a question-answering bundle finds the answer
span in it.

    from bertdeploy.runtime import load
    from bertdeploy.runtime.two_stage import TwoStageReader
    reader = TwoStageReader(load("models/drcd-select"), load("models/drcd-qa"))
    reader.predict([{"question": "...", "paragraphs": ["...", "...", "...", "..."]}])
    # [Found(answer='歐洲', score=0.91, start=1, end=3, paragraph=1, paragraph_score=0.97)]

:func:`evaluate` scores it the way the report does: selection accuracy, the QA model alone on the gold paragraphs,
and end to end (the answer taken from the selected paragraph).

No selection model at all is the third option: ``TwoStageReader(OverlapSelector(), reader)`` (the CLI's
``bertdeploy predict overlap --then QA_BUNDLE``) takes the paragraph that holds most of the question's character
bigrams, the lexical retrieval DrQA's first stage does with hashed bigrams. Measured on DRCD
(``benchmarks/drcd/README.md``): 0.979 test selection accuracy, where a multiple-choice model trained from scratch on
its 3,524 questions stays at chance.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bertdeploy.errors import UserError
from bertdeploy.metrics_qa import qa_metrics


@dataclass(frozen=True, slots=True)
class Found:
    """The answer of one question: ``answer == paragraphs[paragraph][start:end]``."""

    answer: str
    score: float
    start: int
    end: int
    paragraph: int
    """The index of the selected paragraph among the question's candidates."""
    paragraph_score: float
    """The selection model's probability for that paragraph."""

    def to_dict(self) -> dict[str, Any]:
        return {"answer": self.answer, "score": self.score, "start": self.start, "end": self.end,
                "paragraph": self.paragraph, "paragraph_score": self.paragraph_score}  # fmt: skip


class TwoStageReader:
    """Context selection then span extraction over already loaded heads (a ``Chooser`` and a ``Reader``)."""

    def __init__(self, select: Any, reader: Any) -> None:
        if getattr(select, "head", None) != "chooser":
            raise UserError(f"the selection model must be a multiple-choice bundle, got {_task(select)}")
        if getattr(reader, "head", None) != "reader":
            raise UserError(f"the answer model must be a question-answering bundle, got {_task(reader)}")
        self.select, self.reader = select, reader

    def close(self) -> None:
        self.select.close()
        self.reader.close()

    def predict(self, records: Sequence[dict[str, Any]], **params: Any) -> list[Found]:
        """One :class:`Found` per ``{"question", "paragraphs": [...]}`` record; ``params`` go to the reader
        (``max_answer_len``, ``align_to_words``, ``handle_impossible_answer``, ``doc_stride``)."""
        if isinstance(records, dict):
            records = [records]
        rows = [_record(r, i) for i, r in enumerate(records)]
        choices = self.select.predict([{"question": q, "choices": ps} for q, ps in rows])
        chosen = [(q, ps[c.label]) for (q, ps), c in zip(rows, choices)]
        answers = self.reader.predict(chosen, top_k=1, **params)
        return [Found(a.answer, a.score, a.start, a.end, c.label, c.score) for a, c in zip(answers, choices)]


#: the name that stands for :class:`OverlapSelector` where a selection bundle is expected
OVERLAP = "overlap"


def is_overlap(bundle: Any, then: Any) -> bool:
    """True when ``bundle`` is the word ``overlap`` before a QA bundle (``then``): the selector without a model."""
    return then is not None and str(bundle) == OVERLAP


class OverlapSelector:
    """A selection stage without a model: each question's paragraph is the candidate in which most of the question's
    character bigrams occur (case-folded; ties: the first). ``score`` is the share of the question's bigrams the
    chosen paragraph holds. Written here (a dozen lines of the standard library) rather than taken from a BM25
    package: the runtime depends on numpy and tokenizers only."""

    head = "chooser"
    task = OVERLAP

    def predict(self, records: Sequence[Any]) -> list[Any]:
        """One ``Choice`` per ``{"question", "choices"}`` record (or ``(question, choices)`` pair)."""
        from bertdeploy.runtime.chooser import Choice

        out = []
        for r in records:
            question, choices = (r["question"], r["choices"]) if isinstance(r, dict) else r
            grams = _bigrams(question)
            hits = [sum(g in text for g in grams) for text in (c.casefold() for c in choices)]
            best = max(range(len(hits)), key=hits.__getitem__)
            out.append(Choice(best, hits[best] / len(grams) if grams else 0.0))
        return out

    def close(self) -> None:
        return None


def _bigrams(text: str) -> list[str]:
    text = " ".join(text.casefold().split())
    return [text[i : i + 2] for i in range(len(text) - 1)] or ([text] if text else [])


def _task(head: Any) -> str:
    task = getattr(head, "task", None)
    return getattr(task, "name", type(head).__name__)


def _record(record: Any, i: int) -> tuple[str, list[str]]:
    if not isinstance(record, dict) or "question" not in record or "paragraphs" not in record:
        raise UserError(f"record #{i} must be a {{'question', 'paragraphs'}} dict")
    return record["question"], record["paragraphs"]


def evaluate(reader: TwoStageReader, data: Any, split: str = "test") -> dict[str, Any]:
    """Selection accuracy, the QA model alone on the gold paragraphs, and end-to-end EM / F1 on ``split`` of the
    paragraph-id layout (``data``: its folder; loaded for both tasks)."""
    from bertdeploy.data import DataSpec, load_data

    mc = load_data(DataSpec(str(data), task="multiple-choice")).splits[split]
    qa = load_data(DataSpec(str(data), task="question-answering")).splits[split]
    if mc["id"] != qa["id"]:
        raise UserError(f"{data}: the {split} questions differ between the two tasks")
    references = [list(a["text"]) for a in qa["answers"]]
    found = reader.predict([{"question": q, "paragraphs": ps} for q, ps in zip(mc["question"], mc["choices"])])
    alone = reader.reader.predict(list(zip(qa["question"], qa["context"])))
    selected = [f.paragraph == label for f, label in zip(found, mc["label"])]
    return {
        "split": split,
        "questions": len(found),
        "selection_accuracy": sum(selected) / len(selected) if selected else 0.0,
        "qa_on_gold_paragraphs": qa_metrics([a.answer for a in alone], references),
        "end_to_end": qa_metrics([f.answer for f in found], references),
    }
