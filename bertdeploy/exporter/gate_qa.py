"""The gate's question-answering and multiple-choice parts.

Question answering: the windows of every (question, context) encoded as the runtime's reader encodes them, the
start / end logits kept flat per token (two columns, like a two-tag token classifier), and the **end-to-end
answers** judged: each variant's logits go through the reader's own answer search (:mod:`bertdeploy.runtime.
spans`), parity is the share of questions whose best answer span equals PyTorch's, and the metric is EM / F1
against the reference answers (:mod:`bertdeploy.metrics_qa`). Multiple choice: each question's choices are
encoded as (question, choice) pairs, batched as ``[questions, choices, tokens]``; parity is choice agreement and the
metric accuracy (the text-classification rules, one "label" per choice position).

The answer cap: short-answer data (DRCD's answers are 4 characters at the median) scores better with a cap under
the pipeline's 15 tokens. The export tries :data:`ANSWER_CAPS` on PyTorch's logits, keeps the one with the best EM
(then F1; ties: the one nearest 15, then the shorter) on the even-numbered evaluation questions, records every
cap's EM / F1 on both halves (the odd-numbered questions were not looked at to choose it) in the manifest's
``answers``, and the gate judges every variant with it; the runtime then uses it where a call does not say
``max_answer_len``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bertdeploy.exporter.batches import MODEL_INPUTS, Batches, cut, runtime_encoder
from bertdeploy.runtime.spans import MAX_ANSWER_LEN

#: the answer caps (tokens) the export chooses from; 15 is the transformers pipeline's default
ANSWER_CAPS = (4, 6, 8, 10, 12, 15, 20, 30)
#: questions in each half below which the cap stays the pipeline's 15 (too few to tell caps apart)
MIN_CALIBRATION = 100


def _encoder(tokenizer: Any, max_length: int, **kw: Any) -> Any:
    from bertdeploy.runtime.tokenize import PairEncoder

    return runtime_encoder(tokenizer, max_length, PairEncoder, **kw)


def make_span_batches(
    tokenizer: Any, pairs: list[tuple[str, str]], max_length: int, batch_size: int = 64, question_match: bool = False
) -> Batches:
    """Question answering: (question, context) windows with the reader's ``doc_stride``, cut like the runtime
    (``question_match``: with the question-match token types of a reader trained with them)."""
    encoder = _encoder(tokenizer, max_length, stride=min(max_length // 2, 128))
    found = encoder.too_long([q for q, _ in pairs])
    if found is not None:
        from bertdeploy.errors import UserError

        raise UserError(f"evaluation question #{found[0]}: {encoder.too_long_reason(*found[1:])}")
    encoded = encoder.encode_marked(pairs) if question_match else encoder.encode_pairs(pairs)
    return cut(encoded, encoder.pad_id, max_length, batch_size, tokens=encoded, kind="spans")


def make_choice_batches(
    tokenizer: Any, questions: list[str], choices: list[list[str]], max_length: int, batch_size: int = 64
) -> Batches:
    """Multiple choice: every (question, choice) pair, truncated like training (``longest_first``), batched as
    ``[questions, choices, tokens]`` (a question's rows padded together)."""
    from bertdeploy.runtime.batching import BatchPolicy, plan
    from bertdeploy.runtime.chooser import choice_feed

    width = len(choices[0]) if choices else 1
    encoder = _encoder(tokenizer, max_length, windows=False, offsets=False)
    encoded = encoder.encode_pairs([(q, c) for q, cs in zip(questions, choices) for c in cs])
    lengths = encoded.lengths.reshape(-1, width).max(axis=1) if len(questions) else encoded.lengths
    policy = BatchPolicy(padding="bucketed", batch_size=batch_size, max_tokens=batch_size * max_length)
    feeds, index = [], []
    for idx, padded in plan(lengths, policy, max_length):
        feeds.append(choice_feed(encoded, idx, width, padded, MODEL_INPUTS, encoder.pad_id))
        index.append(idx)
    return Batches(feeds, index, len(questions), kind="choices")


def best_spans(logits: np.ndarray, batches: Batches, max_answer_len: int | None = None) -> list[Any]:
    """The best answer (:class:`~bertdeploy.runtime.spans.Answer`) of each question from flat start / end logits,
    answers of at most ``max_answer_len`` tokens (None: ``batches.max_answer_len``)."""
    from bertdeploy.runtime.reader import span_logits
    from bertdeploy.runtime.spans import Answer, answers

    cap = batches.max_answer_len if max_answer_len is None else max_answer_len
    spans = span_logits(batches.tokens, logits)
    out = []
    for i, context in enumerate(spans.contexts):
        found = answers(context, spans.windows(i), max_answer_len=cap)
        out.append(found[0] if found else Answer("", 0.0, 0, 0))
    return out


def pick_answer_len(
    logits: np.ndarray, answers: list[dict[str, list[Any]]], batches: Batches
) -> tuple[int, dict[str, Any]]:
    """The answer cap a QA bundle records (see the module docstring) and the manifest's ``answers`` record."""
    from bertdeploy.metrics_qa import qa_metrics

    gold = [list(a["text"]) for a in answers]
    if len(gold) < 2 * MIN_CALIBRATION:
        reason = f"{len(gold)} questions: fewer than {2 * MIN_CALIBRATION} to choose on"
        return MAX_ANSWER_LEN, {"max_answer_len": MAX_ANSWER_LEN, "picked": False, "reason": reason}
    halves = {"calibration": slice(0, None, 2), "held_out": slice(1, None, 2)}
    grid: dict[str, dict[str, dict[str, float]]] = {}
    for cap in ANSWER_CAPS:
        predicted = [a.answer for a in best_spans(logits, batches, cap)]
        scores = {name: qa_metrics(predicted[h], gold[h]) for name, h in halves.items()}
        grid[str(cap)] = {name: {m: round(s[m], 4) for m in ("exact_match", "f1")} for name, s in scores.items()}

    def key(cap: int) -> tuple[float, float, int, int]:
        calib = grid[str(cap)]["calibration"]
        return calib["exact_match"], calib["f1"], -abs(cap - MAX_ANSWER_LEN), -cap

    best = max(ANSWER_CAPS, key=key)
    record = {"max_answer_len": best, "picked": True, "calibration": "even-numbered evaluation questions",
              "held_out": "odd-numbered evaluation questions", "grid": grid}  # fmt: skip
    return best, record


def span_parity(reference: np.ndarray, logits: np.ndarray, rows: int, batches: Batches) -> dict[str, Any]:
    """max / mean |logit diff| over the context tokens of the first ``rows`` questions, and the share of those
    questions whose best answer span is PyTorch's."""
    from bertdeploy.runtime.reader import span_logits

    ours = best_spans(logits, batches)[:rows]
    theirs = best_spans(reference, batches)[:rows]
    spans = span_logits(batches.tokens, logits)[:rows]
    tokens = np.flatnonzero(spans.context)
    finite = bool(np.isfinite(logits).all())
    diff = np.abs(reference[tokens] - logits[tokens]) if finite else np.full((len(tokens), 2), np.inf)
    same = [(a.start, a.end) == (b.start, b.end) for a, b in zip(ours, theirs)]
    return {
        "rows": len(same),
        "max_abs_diff": float(diff.max()) if diff.size else 0.0,
        "mean_abs_diff": float(diff.mean()) if diff.size else 0.0,
        "agreement": float(np.mean(same)) if same else 1.0,
        "finite": finite,
    }


def span_scores(logits: np.ndarray, answers: list[dict[str, list[Any]]], batches: Batches) -> dict[str, Any]:
    """Exact match and F1 of the best answers against the reference answers (SQuAD / CMRC 2018 rules)."""
    from bertdeploy.metrics_qa import qa_metrics

    predicted = [a.answer for a in best_spans(logits, batches)]
    return qa_metrics(predicted, [list(a["text"]) for a in answers])
