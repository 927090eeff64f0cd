"""Tags and entities of many texts at once: what :func:`bertdeploy.runtime.entities.best_tags` and
:func:`~bertdeploy.runtime.entities.aggregate` give text by text (the same tags; the same entities, scores equal to
float rounding: ``average`` sums a word's tokens in another order, a float32 ulp apart), with the per-text Python work
done by numpy over every token of a batch of texts; every aggregation (:func:`token_entities`, :func:`word_entities`).

Where the time went before (SNIPS slots, AMD EPYC, one thread; ``benchmarks/snips_slots/decode-batch-amd/``): the
default decoding (``simple``, ``bio`` with the tag prior) cost 180-230 µs a sentence against ~1.1 ms (bert-mini) of
tokenizing and model, because with a prior most sentences have some token with a second tag within
:data:`~bertdeploy.runtime.entities.SEARCH_MARGIN` of its best and the sequence search ran in Python for ~85 % of
them. Here it runs once for all of them, over every (token, likely tag) node (:func:`_viterbi_batch`): 31-35 µs.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

from bertdeploy.runtime.entities import (
    SEARCH_MARGIN,
    TINY,
    Entity,
    TagPrior,
    _tag,
    _transitions,
    _viterbi,
    _viterbi_few,
    log_probabilities,
    whitespace_words,
)

#: texts to search before the batched search pays: it costs a dozen numpy calls per position whatever the number of
#: texts (~0.7 ms for one SNIPS sentence), the per-text search ~0.1 ms a text
BATCH_SEARCH = 8
#: fewer texts than this are decoded text by text (``Tagger.decode``): the batched decoder's fixed cost per call
#: (~0.2 ms) is more than theirs (~0.13 ms a SNIPS sentence); from 3 texts on the batch wins
FEW_TEXTS = 3


def best_tags_many(
    scores: np.ndarray,
    bounds: np.ndarray,
    labels: Sequence[str],
    decoding: str = "bio",
    probabilities: bool = False,
    prior: TagPrior | None = None,
) -> np.ndarray:
    """:func:`~bertdeploy.runtime.entities.best_tags` of every text at once: text ``i`` is rows
    ``bounds[i]:bounds[i + 1]`` of ``scores``; returns the tag id of every row."""
    best = scores.argmax(axis=1) if len(scores) else np.zeros(0, dtype=np.int64)
    rules = _transitions(tuple(labels))
    if decoding != "bio" or not len(scores) or (rules is None and prior is None):
        return best
    bounds = np.asarray(bounds, dtype=np.int64)
    if prior is None:
        step, start = rules  # type: ignore[misc]
        for a, b in _spans(bounds, _invalid(best, bounds, step, start)):
            rows = scores[a:b]
            best[a:b] = _viterbi(np.log(np.maximum(rows, TINY)) if probabilities else rows, step, start)
        return best
    log_scores = log_probabilities(scores, probabilities)
    step, start, lists = prior.with_rules(rules)
    near = log_scores >= log_scores.max(axis=1, keepdims=True) - SEARCH_MARGIN
    width = near.sum(axis=1)
    filled = np.flatnonzero(np.diff(bounds) > 0)
    widest = np.zeros(len(bounds) - 1, dtype=np.int64)
    widest[filled] = np.maximum.reduceat(width, bounds[filled])
    narrowest = np.ones(len(bounds) - 1, dtype=np.int64)
    narrowest[filled] = np.minimum.reduceat(width, bounds[filled])  # 0: a row of NaN (a broken model's output)
    search = (widest > 1) | _invalid(best, bounds, step, start)
    full = narrowest == 0  # searched over every tag, as are the texts with no valid path through their likely tags
    texts = np.flatnonzero(search & ~full)
    if len(texts) >= BATCH_SEARCH:
        failed = _viterbi_batch(log_scores, near, bounds[texts], bounds[texts + 1], step, start, best)
        full[texts[failed]] = True
    else:  # a few texts (one request, batch 1): the per-text search costs less than a numpy step per position
        for i in texts.tolist():
            a, b = int(bounds[i]), int(bounds[i + 1])
            path = _viterbi_few(log_scores[a:b], near[a:b], lists)
            if path is None:
                full[i] = True
            else:
                best[a:b] = path
    for a, b in _spans(bounds, full):
        best[a:b] = _viterbi(log_scores[a:b], step, start)
    return best


def _invalid(best: np.ndarray, bounds: np.ndarray, step: np.ndarray, start: np.ndarray) -> np.ndarray:
    """Per text: whether its argmax path takes a forbidden (-inf) start or step."""
    n_texts = len(bounds) - 1
    text = np.repeat(np.arange(n_texts), np.diff(bounds))
    out = np.zeros(n_texts, dtype=bool)
    filled = np.flatnonzero(np.diff(bounds) > 0)
    out[filled] = ~np.isfinite(start[best[bounds[filled]]])
    same = text[1:] == text[:-1]
    bad = same & ~np.isfinite(step[best[:-1], best[1:]])
    out[text[1:][bad]] = True
    return out


def _spans(bounds: np.ndarray, which: np.ndarray) -> list[tuple[int, int]]:
    return [(int(bounds[i]), int(bounds[i + 1])) for i in np.flatnonzero(which)]


def _ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """``concatenate([arange(a, a + k) for a, k in zip(starts, counts)])`` without the loop."""
    offsets = np.cumsum(counts) - counts
    return np.repeat(starts - offsets, counts) + np.arange(int(counts.sum()))


def _viterbi_batch(
    log_scores: np.ndarray,
    near: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    step: np.ndarray,
    start: np.ndarray,
    out: np.ndarray,
) -> np.ndarray:
    """:func:`~bertdeploy.runtime.entities._viterbi_few` of the texts ``starts[k]:ends[k]`` together: a node per
    (token, likely tag), an edge per pair of nodes of consecutive tokens, each position of every text one numpy
    step (ties go to the lowest tag, as there). Writes the paths into ``out``; returns which texts had no valid path
    through their likely tags."""
    lengths = ends - starts
    rows = _ranges(starts, lengths)  # the texts' rows, text by text
    base = np.cumsum(lengths) - lengths  # where each text starts in ``rows``
    r, tag = np.nonzero(near[rows])  # nodes: (position in ``rows``, tag), tags ascending within a row
    val = log_scores[rows[r], tag].astype(np.float64)
    width = np.bincount(r, minlength=len(rows))
    ptr = np.cumsum(width) - width  # each row's first node
    score = np.full(len(r), -np.inf)
    back = np.zeros(len(r), dtype=np.int64)
    nodes = _ranges(ptr[base], width[base])
    score[nodes] = start[tag[nodes]] + val[nodes]
    for t in range(1, int(lengths.max())):
        here = base[lengths > t] + t
        cur = _ranges(ptr[here], width[here])
        fan = width[r[cur] - 1]  # each node's predecessors: every node of the token before
        prev = _ranges(ptr[r[cur] - 1], fan)
        total = score[prev] + step[tag[prev], np.repeat(tag[cur], fan)]
        pick = _first_max(total, fan)
        back[cur], score[cur] = prev[pick], total[pick] + val[cur]
    last = base + lengths - 1
    ends_nodes = _ranges(ptr[last], width[last])
    final = ends_nodes[_first_max(score[ends_nodes], width[last])]
    failed = ~np.isfinite(score[final])
    node = final
    for t in range(int(lengths.max()) - 1, -1, -1):
        live = (lengths > t) & ~failed
        out[starts[live] + t] = tag[node[live]]
        node = np.where(live, back[node], node)  # the first token's back pointer is never read
    return failed


def _first_max(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Per consecutive segment of ``counts`` values (each >= 1): the index in ``values`` of its first maximum."""
    seg = np.cumsum(counts) - counts
    top = np.repeat(np.maximum.reduceat(values, seg), counts)
    index = np.arange(len(values))
    return np.minimum.reduceat(np.where(values == top, index, len(values)), seg)


def token_entities(
    texts: Sequence[str],
    bounds: np.ndarray,
    scores: np.ndarray,
    spans: np.ndarray,
    tags: np.ndarray,
    labels: Sequence[str],
    ignore: frozenset[str],
    grouped: bool = True,
) -> list[list[Entity]]:
    """The entities of aggregation ``simple`` (``grouped``: adjacent tokens of one type merge unless the next one is
    ``B-``, the pipeline's ``group_entities``) or ``none`` (one per token) of every text, from the tokens' tag ids."""
    n = len(tags)
    text = np.repeat(np.arange(len(texts)), np.diff(bounds))
    top = scores[np.arange(n), tags].astype(np.float64)
    if not grouped:
        names = np.array(labels, dtype=object)
        keep = np.flatnonzero(~np.array([name in ignore for name in labels], dtype=bool)[tags])
        index = keep - np.asarray(bounds)[text[keep]] + 1
        return _collect(texts, text[keep], names[tags[keep]], top[keep], spans[keep, 0], spans[keep, 1], index)
    kind, opens, group_names = _groups(tuple(labels))
    new = opens[tags].copy()
    new[0:1] = True
    new[1:] |= (kind[tags[1:]] != kind[tags[:-1]]) | (text[1:] != text[:-1])
    first = np.flatnonzero(new)
    last = np.append(first[1:], n) - 1
    mean = np.add.reduceat(top, first) / (last - first + 1) if n else top
    names = group_names[tags[first]]
    keep = ~np.array([name in ignore for name in group_names], dtype=bool)[tags[first]]
    first, last = first[keep], last[keep]
    return _collect(texts, text[first], names[keep], mean[keep], spans[first, 0], spans[last, 1], None)


@functools.lru_cache(maxsize=64)
def _groups(labels: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per tag: its type's id, whether it opens an entity (``B-``), and the entity group it names (the pipeline's
    ``group_entities`` reading of a tag, as :func:`~bertdeploy.runtime.entities._group`)."""
    kinds: dict[str, int] = {}
    kind = np.array([kinds.setdefault(_tag(name)[1], len(kinds)) for name in labels], dtype=np.int64)
    opens = np.array([_tag(name)[0] == "B" for name in labels], dtype=bool)
    return kind, opens, np.array([name.split("-", 1)[-1] for name in labels], dtype=object)


def word_entities(
    texts: Sequence[str],
    bounds: np.ndarray,
    scores: np.ndarray,
    spans: np.ndarray,
    words: np.ndarray,
    labels: Sequence[str],
    aggregation: str,
    ignore: frozenset[str],
    word_boundaries: str = "whitespace",
    decoding: str = "bio",
    prior: TagPrior | None = None,
) -> list[list[Entity]]:
    """The entities of aggregation ``first`` / ``average`` / ``max`` of every text: each word's scores from its
    tokens' (the first token's, their mean, the most confident token's), the words' tags decoded, then grouped as
    ``simple`` groups tokens; words as :func:`~bertdeploy.runtime.entities.aggregate` takes them (``whitespace``:
    :func:`~bertdeploy.runtime.entities.whitespace_words` per text, else the tokenizer's word ids ``words``)."""
    if not len(scores):
        return [[] for _ in texts]
    bounds = np.asarray(bounds, dtype=np.int64)
    if word_boundaries == "whitespace":
        words = np.concatenate([whitespace_words(t, spans[a:b]) for t, a, b in zip(texts, bounds, bounds[1:])])
    text = np.repeat(np.arange(len(texts)), np.diff(bounds))
    new = np.ones(len(scores), dtype=bool)
    new[1:] = (words[1:] != words[:-1]) | (text[1:] != text[:-1])
    first = np.flatnonzero(new)
    counts = np.diff(np.append(first, len(scores)))
    if aggregation == "first":
        vectors = scores[first]
    elif aggregation == "max":
        vectors = scores[_first_max(scores.max(axis=1), counts)]
    else:  # average: as ndarray.mean (a float64 quotient stored as the scores' dtype)
        vectors = (np.add.reduceat(scores, first, axis=0) / counts[:, None]).astype(scores.dtype)
    word_spans = np.stack([spans[first, 0], spans[first + counts - 1, 1]], axis=1)
    word_bounds = np.concatenate([[0], np.cumsum(np.bincount(text[first], minlength=len(texts)))]).astype(np.int64)
    tags = best_tags_many(vectors, word_bounds, labels, decoding, probabilities=True, prior=prior)
    return token_entities(texts, word_bounds, vectors, word_spans, tags, labels, ignore)


def _collect(
    texts: Sequence[str],
    owner: np.ndarray,
    names: np.ndarray,
    scores: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    index: np.ndarray | None,
) -> list[list[Entity]]:
    out: list[list[Entity]] = [[] for _ in texts]
    indices = [None] * len(owner) if index is None else index.tolist()
    for i, name, score, a, b, k in zip(owner.tolist(), names.tolist(), scores.tolist(), starts.tolist(),
                                       ends.tolist(), indices):  # fmt: skip
        out[i].append(Entity(name, score, texts[i][a:b], a, b, k))
    return out
