"""Token scores -> entities, with the semantics of the transformers ``token-classification`` pipeline
(``aggregation_strategy`` none | simple | first | average | max, ``ignore_labels``), numpy only.

Three deliberate differences from the pipeline:

* tags are decoded as a sequence (``decoding="bio"``, the default): ``I-X`` only after ``B-X`` or ``I-X``, the most
  probable such sequence (Viterbi over the log probabilities; conditional random field decoding without learned
  transitions). Where the per-token argmax already obeys the rule, nothing changes; where it does not (a stray
  ``I-X`` after ``O`` or after ``B-Y``), the pipeline splits or retypes the entity. Measured on SNIPS slots
  (six MiniLM-L6 runs): +0.26 to +0.46 test entity F1 points (``benchmarks/snips_slots/README.md``).
  ``decoding="argmax"`` is the pipeline's per-token choice;

* ``word`` is always ``text[start:end]``, the characters of the original text (the pipeline rebuilds it from the
  tokens: lower-cased by an uncased vocabulary, spaces put between Chinese characters, ``[UNK]`` for unknown ones);
* the words of the word-level strategies are the tokenizer's pre-tokenized words (its ``word_ids``); the pipeline
  guesses them from token lengths, which makes an ``[UNK]`` a sub-word of the token before it.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

# Standard library and numpy only at import: `bertdeploy package triton` copies this file, as it is, beside the
# entities step of a token-classification repository, where Triton's Python backend runs it without bertdeploy.

AGGREGATIONS = ("none", "simple", "first", "average", "max")
#: what a "word" is for the word-level aggregations (first / average / max)
WORD_BOUNDARIES = ("whitespace", "tokenizer")
#: how tags are chosen: the best BIO-valid sequence (``I-X`` only after ``B-X`` / ``I-X``), or each on its own
DECODINGS = ("bio", "argmax")
#: the probability floor where probabilities are turned into the log scores that sequence decoding adds up
TINY = 1e-30


@dataclass(frozen=True, slots=True)
class Entity:
    """One entity (or, with ``aggregation="none"``, one token) of a text: ``word == text[start:end]``."""

    entity_group: str
    """The entity type (``PER``); with aggregation ``none`` the token's tag (``B-PER``)."""
    score: float
    word: str
    start: int
    end: int
    index: int | None = None
    """Aggregation ``none`` only: the token's position (1 = the first token after ``[CLS]``)."""

    def to_dict(self) -> dict[str, Any]:
        """The transformers pipeline's dict: ``entity_group`` (or ``entity`` and ``index`` for ``none``)."""
        if self.index is not None:
            return {"entity": self.entity_group, "score": self.score, "index": self.index, "word": self.word,
                    "start": self.start, "end": self.end}  # fmt: skip
        return {"entity_group": self.entity_group, "score": self.score, "word": self.word, "start": self.start,
                "end": self.end}  # fmt: skip


def check_aggregation(aggregation: Any) -> str:
    from bertdeploy.errors import UserError

    if not isinstance(aggregation, str) or aggregation.lower() not in AGGREGATIONS:
        raise UserError(f"aggregation must be one of {', '.join(AGGREGATIONS)}, got {aggregation!r}")
    return aggregation.lower()


def check_word_boundaries(value: Any) -> str:
    if value not in WORD_BOUNDARIES:
        from bertdeploy.errors import UserError

        raise UserError(f"word_boundaries must be one of {', '.join(WORD_BOUNDARIES)}, got {value!r}")
    return value


def check_decoding(value: Any) -> str:
    if value not in DECODINGS:
        from bertdeploy.errors import UserError

        raise UserError(f"decoding must be one of {', '.join(DECODINGS)}, got {value!r}")
    return value


@functools.lru_cache(maxsize=64)
def _transitions(labels: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray] | None:
    """(step ``[from, to]``, start ``[to]``) scores, 0 where allowed and -inf where not: ``I-X`` only follows ``B-X``
    or ``I-X``, and never starts a sentence. None for a tag set without ``I-`` tags (nothing to constrain)."""
    inside = [j for j, name in enumerate(labels) if name.startswith("I-")]
    if not inside:
        return None
    allowed = np.ones((len(labels), len(labels)), dtype=bool)
    first = np.ones(len(labels), dtype=bool)
    for j in inside:
        kind = labels[j][2:]
        allowed[:, j] = [name in (f"B-{kind}", f"I-{kind}") for name in labels]
        first[j] = False
    return np.where(allowed, 0.0, -np.inf), np.where(first, 0.0, -np.inf)


def best_tags(
    scores: np.ndarray, labels: Sequence[str], decoding: str = "bio", probabilities: bool = False
) -> np.ndarray:
    """The tag id of each row of ``scores`` (``[n, labels]``, one sentence's tokens or words in order: logits or log
    probabilities — a constant per row changes no path —, or with ``probabilities`` the softmax itself): each row's
    argmax, or (``bio``) the most probable sequence in which ``I-X`` only follows ``B-X`` / ``I-X`` — the argmax
    itself whenever it obeys that rule (then it is the best such sequence; nothing else is computed)."""
    n = len(scores)
    best = scores.argmax(axis=1) if n else np.zeros(0, dtype=np.int64)
    rules = _transitions(tuple(labels)) if decoding == "bio" and n else None
    if rules is None:
        return best
    step, start = rules
    if np.isfinite(start[best[0]]) and np.isfinite(step[best[:-1], best[1:]]).all():
        return best
    log_scores = np.log(np.maximum(scores, TINY)) if probabilities else scores
    width = len(labels)
    score = log_scores[0] + start
    back = np.zeros((n, width), dtype=np.int64)
    for t in range(1, n):
        candidates = score[:, None] + step
        back[t] = candidates.argmax(axis=0)
        score = candidates[back[t], np.arange(width)] + log_scores[t]
    path = np.zeros(n, dtype=np.int64)
    path[-1] = int(score.argmax())
    for t in range(n - 1, 0, -1):
        path[t - 1] = back[t, path[t]]
    return path


def check_ignore(ignore_labels: Any) -> frozenset[str]:
    from bertdeploy.errors import UserError

    if ignore_labels is None:
        return frozenset()
    if isinstance(ignore_labels, str) or not all(isinstance(x, str) for x in ignore_labels):
        raise UserError(f"ignore_labels must be a list of label names, got {ignore_labels!r}")
    return frozenset(ignore_labels)


def _tag(name: str) -> tuple[str, str]:
    """(B | I, type) as the pipeline reads a tag: anything but ``B-`` / ``I-`` continues like ``I-``."""
    if name.startswith("B-"):
        return "B", name[2:]
    if name.startswith("I-"):
        return "I", name[2:]
    return "I", name


def _group(items: list[tuple[str, float, int, int]], text: str) -> list[Entity]:
    """The pipeline's ``group_entities``: adjacent items of one type merge unless the next one is ``B-``."""
    out: list[Entity] = []
    run: list[tuple[str, float, int, int]] = []

    def close() -> None:
        group = run[0][0].split("-", 1)[-1]
        score = float(np.mean([s for _, s, _, _ in run]))
        start, end = run[0][2], run[-1][3]
        out.append(Entity(group, score, text[start:end], start, end))

    for item in items:
        if run:
            bi, kind = _tag(item[0])
            if not (kind == _tag(run[-1][0])[1] and bi != "B"):
                close()
                run = []
        run.append(item)
    if run:
        close()
    return out


def _words(words: np.ndarray) -> list[slice]:
    """Slices of consecutive tokens of one word."""
    if not len(words):
        return []
    cuts = np.flatnonzero(np.diff(words) != 0) + 1
    bounds = [0, *cuts.tolist(), len(words)]
    return [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]


def is_cjk(ch: str) -> bool:
    """Whether ``ch`` is a CJK ideograph: a word of its own in token-classification data (and its augmentation)."""
    return "\u4e00" <= ch <= "\u9fff" or "\u3400" <= ch <= "\u4dbf" or "\uf900" <= ch <= "\ufaff"


def whitespace_words(text: str, spans: np.ndarray) -> np.ndarray:
    """A word id per token where a word is a run of text without whitespace, each CJK character a word of its own
    (how token-classification data splits sentences: ``top-rated`` and ``don't`` are one word, ``北京`` two)."""
    n = len(spans)
    out = np.zeros(n, dtype=np.int64)
    for i in range(1, n):
        gap = text[int(spans[i - 1, 1]) : int(spans[i, 0])]
        cjk = is_cjk(text[int(spans[i, 0]) : int(spans[i, 0]) + 1]) or is_cjk(text[int(spans[i - 1, 0])])
        out[i] = out[i - 1] + (1 if cjk or any(c.isspace() for c in gap) else 0)
    return out


def _word_vector(block: np.ndarray, aggregation: str) -> np.ndarray:
    """A word's scores from its tokens': the first token's, the most confident token's (``max``) or their mean."""
    if aggregation == "first":
        return block[0]
    if aggregation == "max":
        return block[int(block.max(axis=1).argmax())]
    return block.mean(axis=0)


def aggregate(
    text: str,
    scores: np.ndarray,
    spans: np.ndarray,
    words: np.ndarray,
    labels: Sequence[str],
    aggregation: str = "simple",
    ignore: frozenset[str] = frozenset({"O"}),
    word_boundaries: str = "whitespace",
    decoding: str = "bio",
) -> list[Entity]:
    """The entities of one text from its tokens (special tokens removed, in text order): ``scores`` the softmax
    ``[tokens, labels]``, ``spans`` the ``[start, end)`` character offsets, ``words`` the tokenizer's word index of
    each. ``word_boundaries`` says what a word is for ``first`` / ``average`` / ``max``: ``whitespace``
    (:func:`whitespace_words`, the default: the words token-classification data is labelled on) or ``tokenizer``
    (the tokenizer's pre-tokenized words, which also split at punctuation: the transformers pipeline's words).
    ``decoding``: :func:`best_tags` over the tokens (``none`` / ``simple``) or the words' vectors."""
    if word_boundaries == "whitespace" and aggregation not in ("none", "simple"):
        words = whitespace_words(text, spans)
    if aggregation in ("none", "simple"):
        best = best_tags(scores, labels, decoding, probabilities=True)
        top = scores[np.arange(len(best)), best].tolist()
        items = [(labels[b], s, int(a), int(e)) for b, s, (a, e) in zip(best.tolist(), top, spans.tolist())]
        if aggregation == "none":
            found = [Entity(n, s, text[a:e], a, e, i + 1) for i, (n, s, a, e) in enumerate(items)]
            return [x for x in found if x.entity_group not in ignore]
    else:
        parts = _words(words)
        vectors = np.array([_word_vector(scores[part], aggregation) for part in parts]).reshape(-1, len(labels))
        chosen = best_tags(vectors, labels, decoding, probabilities=True).tolist()
        items = [(labels[b], float(v[b]), int(spans[part][0, 0]), int(spans[part][-1, 1]))
                 for b, v, part in zip(chosen, vectors, parts)]  # fmt: skip
    return [x for x in _group(items, text) if x.entity_group not in ignore]
