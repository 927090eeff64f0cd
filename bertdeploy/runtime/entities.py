"""Token scores -> entities, with the semantics of the transformers ``token-classification`` pipeline
(``aggregation_strategy`` none | simple | first | average | max, ``ignore_labels``), numpy only.

Three deliberate differences from the pipeline:

* tags are decoded as a sequence (``decoding="bio"``, the default): ``I-X`` only after ``B-X`` or ``I-X``, the most
  probable such sequence (Viterbi over the log probabilities; conditional random field decoding), each transition
  scored by the training tags' bigram statistics where the bundle carries them (:class:`TagPrior`, counted instead
  of learned). Where the per-token argmax obeys the rule and no tag is close, nothing changes; where it does not (a
  stray ``I-X`` after ``O`` or after ``B-Y``), the pipeline splits or retypes the entity. Measured on SNIPS slots
  (six MiniLM-L6 runs): +0.26 to +0.46 test entity F1 points for the rule, +0.17 on average for the transitions
  (``benchmarks/snips_slots/README.md``). ``decoding="argmax"`` is the pipeline's per-token choice;

* ``word`` is always ``text[start:end]``, the characters of the original text (the pipeline rebuilds it from the
  tokens: lower-cased by an uncased vocabulary, spaces put between Chinese characters, ``[UNK]`` for unknown ones);
* the words of the word-level strategies are the tokenizer's pre-tokenized words (its ``word_ids``); the pipeline
  guesses them from token lengths, which makes an ``[UNK]`` a sub-word of the token before it.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
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
#: weight of the training tags' transition log probabilities in ``bio`` decoding (:class:`TagPrior`), chosen on
#: SNIPS slots' validation split over six MiniLM-L6 runs (0, 0.1, ..., 1 tried; ``benchmarks/snips_slots``)
PRIOR_WEIGHT = 0.5
#: add-k smoothing of the transition counts (a tag pair never seen in training keeps a finite score)
PRIOR_SMOOTHING = 0.5
#: with a prior, tags more than this many nats below a word's best (a probability 3,000 times smaller) are left out
#: of the search: 1.9 tags a word instead of 72 on SNIPS, the same paths as the full search on all 8,400 sentences
#: of six runs' validation + test (6 nats: also the same; 2: 24 differ)
SEARCH_MARGIN = 8.0


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


@dataclass(frozen=True)
class TagPrior:
    """How often each tag starts a training sentence and follows each other tag, as ``bio`` decoding adds it:
    ``weight`` × log P(tag | previous tag) (add-``PRIOR_SMOOTHING`` estimates) on top of the BIO rule — a linear-chain
    CRF's transition scores, counted from the training tags instead of learned. Stored in the run folder
    (``tag_transitions.json``) and the bundle's manifest (``tag_transitions``) as sparse counts."""

    start: np.ndarray
    """``[labels]`` log P(first tag) × weight"""
    step: np.ndarray
    """``[from, to]`` log P(to | from) × weight"""
    _lists: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def with_rules(self, rules: tuple[np.ndarray, np.ndarray] | None) -> tuple[np.ndarray, np.ndarray, Any]:
        """(step, start, both as Python lists) of this prior plus the BIO rule's ``rules`` (None: no rule), computed
        once per rule."""
        key = "plain" if rules is None else "bio"
        if key not in self._lists:
            step, start = (self.step, self.start) if rules is None else (rules[0] + self.step, rules[1] + self.start)
            self._lists[key] = (step, start, (step.tolist(), start.tolist()))
        return self._lists[key]

    @classmethod
    def from_counts(cls, table: Any, n_labels: int) -> TagPrior:
        """From ``{"weight", "smoothing", "start": [[tag, count], ...], "pairs": [[from, to, count], ...]}`` (what
        :func:`count_transitions` returns); ValueError naming what is malformed."""
        if not isinstance(table, dict):
            raise ValueError("tag_transitions must be an object")
        try:
            weight, smoothing = float(table.get("weight", PRIOR_WEIGHT)), float(table.get("smoothing", PRIOR_SMOOTHING))
            start = np.full(n_labels, smoothing)
            pairs = np.full((n_labels, n_labels), smoothing)
            for counts, entries in ((start, table["start"]), (pairs, table["pairs"])):
                for *tags, count in entries:
                    if len(tags) != counts.ndim or not all(0 <= int(t) < n_labels for t in tags) or not count >= 0:
                        raise ValueError(f"bad entry {[*tags, count]}")
                    counts[tuple(int(t) for t in tags)] += float(count)
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"tag_transitions: malformed counts ({e})") from None
        if not (weight >= 0 and smoothing > 0 and np.isfinite([weight, smoothing]).all()):
            raise ValueError("tag_transitions: weight must be >= 0 and smoothing > 0")
        return cls(weight * np.log(start / start.sum()), weight * np.log(pairs / pairs.sum(axis=1, keepdims=True)))


def count_transitions(sequences: Any, n_labels: int, weight: float = PRIOR_WEIGHT) -> dict[str, Any]:
    """The sparse counts of :class:`TagPrior` from tag-id sequences (the training split's tags)."""
    start = np.zeros(n_labels, dtype=np.int64)
    pairs = np.zeros((n_labels, n_labels), dtype=np.int64)
    for tags in sequences:
        tags = np.asarray(tags, dtype=np.int64)
        if len(tags) and not 0 <= tags.min() <= tags.max() < n_labels:
            raise ValueError(f"tag ids must be in [0, {n_labels}), got {tags.tolist()}")
        if len(tags):
            start[tags[0]] += 1
            np.add.at(pairs, (tags[:-1], tags[1:]), 1)
    return {"weight": weight, "smoothing": PRIOR_SMOOTHING,
            "start": [[int(t), int(c)] for t, c in enumerate(start) if c],
            "pairs": [[int(a), int(b), int(pairs[a, b])] for a, b in zip(*np.nonzero(pairs))]}  # fmt: skip


def best_tags(
    scores: np.ndarray,
    labels: Sequence[str],
    decoding: str = "bio",
    probabilities: bool = False,
    prior: TagPrior | None = None,
) -> np.ndarray:
    """The tag id of each row of ``scores`` (``[n, labels]``, one sentence's tokens or words in order: logits or log
    probabilities, or with ``probabilities`` the softmax itself): each row's argmax, or (``bio``) the most probable
    sequence in which ``I-X`` only follows ``B-X`` / ``I-X``, plus ``prior``'s transition scores where given.
    Without a prior that is the argmax itself whenever it obeys the rule (then nothing else is computed)."""
    n = len(scores)
    best = scores.argmax(axis=1) if n else np.zeros(0, dtype=np.int64)
    if decoding != "bio" or not n:
        return best
    rules = _transitions(tuple(labels))
    if prior is None:
        if rules is None or _allowed(best, *rules):
            return best
        return _viterbi(np.log(np.maximum(scores, TINY)) if probabilities else scores, *rules)
    log_scores = log_probabilities(scores, probabilities)
    step, start, lists = prior.with_rules(rules)
    near = log_scores >= log_scores.max(axis=1, keepdims=True) - SEARCH_MARGIN
    if near.sum(axis=1).max() == 1 and _allowed(best, step, start):
        return best  # one likely tag a word, and they make a valid sequence: nothing to search
    path = _viterbi_few(log_scores, near, lists)
    return path if path is not None else _viterbi(log_scores, step, start)


def log_probabilities(scores: np.ndarray, probabilities: bool) -> np.ndarray:
    """Rows of softmax (``probabilities``) or of logits / log probabilities as log probabilities, which the prior's
    transition scores add to."""
    if probabilities:
        return np.log(np.maximum(scores, TINY))
    shifted = scores - scores.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def _allowed(path: np.ndarray, step: np.ndarray, start: np.ndarray) -> bool:
    """Whether ``path`` never takes a forbidden (-inf) start or step."""
    return bool(np.isfinite(start[path[0]]) and np.isfinite(step[path[:-1], path[1:]]).all())


def _viterbi(log_scores: np.ndarray, step: np.ndarray, start: np.ndarray) -> np.ndarray:
    """The best path under per-row scores + ``start`` + ``step[from, to]`` (Viterbi over every tag)."""
    n, width = log_scores.shape
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


def _viterbi_few(log_scores: np.ndarray, near: np.ndarray, lists: tuple[list[list[float]], list[float]]) -> Any:
    """:func:`_viterbi` over each row's likely tags only (``near``: those within :data:`SEARCH_MARGIN` of the row's
    best; a trained tagger leaves one to three), in plain Python: ~30 µs a SNIPS sentence instead of ~130 for a
    72 × 72 step per word. None when no valid path runs through them (the caller then searches every tag)."""
    step, start = lists
    rows, cols = np.nonzero(near)
    tags: list[list[tuple[int, float]]] = [[] for _ in range(len(log_scores))]
    for r, c, v in zip(rows.tolist(), cols.tolist(), log_scores[rows, cols].tolist()):
        tags[r].append((c, v))
    score = {c: start[c] + v for c, v in tags[0]}
    back: list[dict[int, int]] = []
    for row in tags[1:]:
        here, came = {}, {}
        for c, v in row:
            best_from, best = -1, -np.inf
            for p, s in score.items():  # ascending tag ids: ties go to the lowest, as np.argmax
                if s + step[p][c] > best:
                    best_from, best = p, s + step[p][c]
            here[c], came[c] = best + v, best_from
        score = here
        back.append(came)
    last = max(score, key=lambda c: (score[c], -c))
    if not np.isfinite(score[last]):
        return None
    path = [last]
    for came in reversed(back):
        path.append(came[path[-1]])
    return np.array(path[::-1], dtype=np.int64)


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
        score = sum(s for _, s, _, _ in run) / len(run)  # np.mean's value, without its per-call cost
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
    if n < 2:
        return np.zeros(n, dtype=np.int64)
    new = np.zeros(n, dtype=bool)
    starts, ends = spans[:, 0].tolist(), spans[:, 1].tolist()
    for i in np.flatnonzero(spans[1:, 0] > spans[:-1, 1]).tolist():  # a gap between tokens i and i + 1
        new[i + 1] = any(c.isspace() for c in text[ends[i] : starts[i + 1]])
    if text and max(text) >= "\u3400":  # CJK characters are words of their own (none in most texts: skipped)
        cjk = np.fromiter((is_cjk(text[a : a + 1]) for a in starts), dtype=bool, count=n)
        new[1:] |= cjk[1:] | cjk[:-1]
    return np.cumsum(new).astype(np.int64)


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
    prior: TagPrior | None = None,
) -> list[Entity]:
    """The entities of one text from its tokens (special tokens removed, in text order): ``scores`` the softmax
    ``[tokens, labels]``, ``spans`` the ``[start, end)`` character offsets, ``words`` the tokenizer's word index of
    each. ``word_boundaries`` says what a word is for ``first`` / ``average`` / ``max``: ``whitespace``
    (:func:`whitespace_words`, the default: the words token-classification data is labelled on) or ``tokenizer``
    (the tokenizer's pre-tokenized words, which also split at punctuation: the transformers pipeline's words).
    ``decoding``: :func:`best_tags` over the tokens (``none`` / ``simple``) or the words' vectors, with ``prior``."""
    if word_boundaries == "whitespace" and aggregation not in ("none", "simple"):
        words = whitespace_words(text, spans)
    if aggregation in ("none", "simple"):
        best = best_tags(scores, labels, decoding, probabilities=True, prior=prior)
        top = scores[np.arange(len(best)), best].tolist()
        items = [(labels[b], s, int(a), int(e)) for b, s, (a, e) in zip(best.tolist(), top, spans.tolist())]
        if aggregation == "none":
            found = [Entity(n, s, text[a:e], a, e, i + 1) for i, (n, s, a, e) in enumerate(items)]
            return [x for x in found if x.entity_group not in ignore]
    else:
        parts = _words(words)
        vectors = np.array([_word_vector(scores[part], aggregation) for part in parts]).reshape(-1, len(labels))
        chosen = best_tags(vectors, labels, decoding, probabilities=True, prior=prior).tolist()
        items = [(labels[b], float(v[b]), int(spans[part][0, 0]), int(spans[part][-1, 1]))
                 for b, v, part in zip(chosen, vectors, parts)]  # fmt: skip
    return [x for x in _group(items, text) if x.entity_group not in ignore]
