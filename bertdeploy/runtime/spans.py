"""Start / end logits of a question's windows -> answers, with the semantics of the transformers
``question-answering`` pipeline (``top_k``, ``max_answer_len``, ``handle_impossible_answer``, ``align_to_words``),
numpy only; shared by the runtime's reader and the export gate.

Per window, the start and end logits are masked to the context tokens and ``[CLS]`` and soft-maxed; every span
``start <= end < start + max_answer_len`` scores ``p_start * p_end`` (``[CLS]`` zeroed: its ``p_start * p_end`` is
the no-answer score); the best ``top_k * 2 + 10`` spans of each window are widened to whole words, and spans of
different windows with the same answer text (case-insensitive) add their scores, as the pipeline does. The n-best
search is vectorised: per window, a band of ``max_answer_len`` diagonals of the start x end product, over context
tokens only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: the longest answer, in tokens, where neither the caller nor the bundle says (the transformers pipeline's default)
MAX_ANSWER_LEN = 15


@dataclass(frozen=True, slots=True)
class Answer:
    """One answer: ``answer == context[start:end]`` (character offsets into the context)."""

    answer: str
    score: float
    start: int
    end: int

    def to_dict(self) -> dict[str, object]:
        """The transformers pipeline's / Inference API's dict."""
        return {"answer": self.answer, "score": self.score, "start": self.start, "end": self.end}


@dataclass(frozen=True)
class Window:
    """One window of a question: its tokens' start / end logits, which tokens may be in an answer (the context's),
    each token's ``[start, end)`` characters in the context and its word id (-1 outside the context)."""

    start: np.ndarray
    end: np.ndarray
    context: np.ndarray
    spans: np.ndarray
    words: np.ndarray
    cls: int = 0


def _softmax(logits: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    z = np.where(allowed, logits.astype(np.float64), -10000.0)
    z = np.exp(z - z.max())
    return z / z.sum()


def _widen(window: Window, s: int, e: int) -> tuple[int, int]:
    """Character span of tokens ``s..e`` widened to whole words (the words' tokens inside this window)."""
    words = window.words
    while s > 0 and words[s - 1] == words[s] and words[s] >= 0:
        s -= 1
    while e + 1 < len(words) and words[e + 1] == words[e] and words[e] >= 0:
        e += 1
    return int(window.spans[s, 0]), int(window.spans[e, 1])


def window_spans(window: Window, k: int, max_answer_len: int) -> tuple[list[tuple[int, int, float]], float]:
    """(the ``k`` best token spans ``(s, e, score)`` of the window, its no-answer score ``p_start[cls] *
    p_end[cls]``)."""
    allowed = window.context.copy()
    allowed[window.cls] = True
    start = _softmax(window.start, allowed)
    end = _softmax(window.end, allowed)
    null = float(start[window.cls] * end[window.cls])
    index = np.flatnonzero(window.context)
    if not len(index):
        return [], null
    ps, pe = start[index], end[index]
    n, width = len(index), min(max_answer_len, len(index))
    # band[r, j]: the span from context token r to context token r + j (j < max_answer_len: a band, not n x n)
    ends = np.arange(n)[:, None] + np.arange(width)[None, :]
    inside = ends < n
    ends = np.minimum(ends, n - 1)
    band = np.where(inside & (index[ends] - index[:, None] <= max_answer_len - 1), ps[:, None] * pe[ends], 0.0)
    flat = band.ravel()
    k = min(k, flat.size)
    top = np.argpartition(-flat, k - 1)[:k] if k < flat.size else np.arange(flat.size)
    top = top[np.lexsort((top, -flat[top]))]  # best first; ties in (start, end) order
    rows, last = top // width, ends.ravel()[top]
    return [(int(index[r]), int(index[c]), float(flat[t])) for r, c, t in zip(rows, last, top)], null


def answers(
    context: str,
    windows: list[Window],
    top_k: int = 1,
    max_answer_len: int = MAX_ANSWER_LEN,
    handle_impossible_answer: bool = False,
    align_to_words: bool = True,
) -> list[Answer]:
    """The ``top_k`` best answers of one question over its windows, best first (``""`` at 0:0 is the no-answer
    with ``handle_impossible_answer``)."""
    found: dict[str, list] = {}
    null = 1_000_000.0
    k = top_k * 2 + 10 if align_to_words else top_k
    for window in windows:
        spans, window_null = window_spans(window, k, max_answer_len)
        null = min(null, window_null)
        for s, e, score in spans:
            if score <= 0.0:
                continue
            a, b = _widen(window, s, e) if align_to_words else (int(window.spans[s, 0]), int(window.spans[e, 1]))
            text = context[a:b]
            key = text.lower()
            if key in found:
                found[key][1] += score
            else:
                found[key] = [text, score, a, b]
    out = [Answer(text, float(score), a, b) for text, score, a, b in found.values()]
    if handle_impossible_answer:
        out.append(Answer("", float(null), 0, 0))
    out.sort(key=lambda x: x.score, reverse=True)
    return out[:top_k]
