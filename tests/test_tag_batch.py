"""Decoding many texts at once (:mod:`bertdeploy.runtime.tag_batch`, what ``Tagger.predict`` runs for aggregations
``simple`` and ``none``) gives what the text-by-text decoder gives: the same tags and entities (scores equal to
float rounding) over random score sets wide and narrow, with and without the training tags' prior, for empty and
one-token texts, and where no valid path runs through a text's likely tags (the full search then)."""

from __future__ import annotations

import numpy as np
import pytest

from bertdeploy.runtime import tag_batch
from bertdeploy.runtime.entities import SEARCH_MARGIN, TagPrior, aggregate, best_tags, count_transitions
from bertdeploy.runtime.tag_batch import best_tags_many, token_entities, word_entities

LABELS = ["O", "B-city", "I-city", "B-day", "I-day", "B-city-part", "I-city-part", "misc"]
SEQUENCES = [[1, 2, 0], [1, 2, 2], [0, 0, 3], [0, 1, 2], [3, 4, 0], [0, 5, 6], [7, 0, 0]] * 4


def softmax(x: np.ndarray) -> np.ndarray:
    z = np.exp(x - x.max(axis=1, keepdims=True))
    return (z / z.sum(axis=1, keepdims=True)).astype(np.float32)


def texts_and_scores(seed: int, sharpness: float) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """Random texts of 0-12 one-letter tokens; per-token softmax at ``sharpness`` (high: one likely tag a token,
    low: many within SEARCH_MARGIN)."""
    rng = np.random.default_rng(seed)
    lengths = rng.choice([0, 1, 2, 3, 5, 8, 12], size=40)
    texts = [" ".join("abcdefghijkl"[:n]) for n in lengths]
    scores = softmax(rng.normal(size=(int(lengths.sum()), len(LABELS))) * sharpness)
    spans = np.concatenate([np.array([[2 * i, 2 * i + 1] for i in range(n)], dtype=np.int64).reshape(-1, 2)
                            for n in lengths])  # fmt: skip
    return texts, np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64), scores, spans


PRIOR = TagPrior.from_counts(count_transitions(SEQUENCES, len(LABELS)), len(LABELS))


@pytest.mark.parametrize("sharpness", [0.5, 3.0, 12.0, 40.0])
@pytest.mark.parametrize("prior", [None, PRIOR], ids=["rule", "prior"])
@pytest.mark.parametrize("decoding", ["bio", "argmax"])
@pytest.mark.parametrize("batch_from", [1, 10**9], ids=["batched", "per-text"])
def test_tags_and_entities_equal_the_text_by_text_decoder(sharpness, prior, decoding, batch_from, monkeypatch):
    monkeypatch.setattr(tag_batch, "BATCH_SEARCH", batch_from)  # both searches: the batched one and the few-texts one
    texts, bounds, scores, spans = texts_and_scores(int(sharpness * 10), sharpness)
    tags = best_tags_many(scores, bounds, LABELS, decoding, probabilities=True, prior=prior)
    pairs = zip(bounds, bounds[1:])
    one = [best_tags(scores[a:b], LABELS, decoding, probabilities=True, prior=prior) for a, b in pairs]
    assert tags.tolist() == np.concatenate(one).tolist()
    for strategy in ("simple", "none"):
        for ignore in (frozenset({"O"}), frozenset(), frozenset({"O", "city"})):
            got = token_entities(texts, bounds, scores, spans, tags, LABELS, ignore, grouped=strategy == "simple")
            words = np.zeros(len(scores), dtype=np.int64)
            want = [aggregate(t, scores[a:b], spans[a:b], words[a:b], LABELS, strategy, ignore, decoding=decoding,
                              prior=prior) for t, a, b in zip(texts, bounds, bounds[1:])]  # fmt: skip
            assert [[(e.entity_group, e.word, e.start, e.end, e.index) for e in x] for x in got] == [
                [(e.entity_group, e.word, e.start, e.end, e.index) for e in x] for x in want
            ]
            assert [[e.score for e in x] for x in got] == [[pytest.approx(e.score, rel=1e-12) for e in x] for x in want]


def test_the_wide_search_really_ran(monkeypatch):
    """The random sets above reach the batched search: texts with a token that has several likely tags, and the
    fallback where the likely tags make no valid path."""
    monkeypatch.setattr(tag_batch, "BATCH_SEARCH", 1)
    texts, bounds, scores, _ = texts_and_scores(5, 0.5)
    log_p = np.log(scores)
    assert ((log_p >= log_p.max(axis=1, keepdims=True) - SEARCH_MARGIN).sum(axis=1) > 3).any()
    stray = softmax(np.array([[0.0, 0.0, 30.0, 0.0, 0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 30.0, 0.0, 0.0, 0.0, 0.0, 0.0]]))
    both = np.concatenate([stray, scores[:5]])
    bounds2 = np.array([0, 2, 2 + 5], dtype=np.int64)
    tags = best_tags_many(both, bounds2, LABELS, probabilities=True, prior=PRIOR)
    assert tags[:2].tolist() == best_tags(stray, LABELS, probabilities=True, prior=PRIOR).tolist() == [1, 2]
    assert tags[2:].tolist() == best_tags(scores[:5], LABELS, probabilities=True, prior=PRIOR).tolist()


def test_no_rows_and_a_row_of_nan():
    """An empty batch gives no tags and no entities; a row of NaN (a broken model's output) gets tags from the full
    search instead of failing on a token without likely tags."""
    none = np.zeros((0, len(LABELS)), dtype=np.float32)
    assert best_tags_many(none, np.array([0, 0]), LABELS, probabilities=True, prior=PRIOR).tolist() == []
    assert token_entities([""], np.array([0, 0]), none, np.zeros((0, 2), dtype=np.int64), np.zeros(0, dtype=np.int64),
                          LABELS, frozenset({"O"})) == [[]]  # fmt: skip
    scores = softmax(np.eye(3, len(LABELS)) * 9)
    scores[1] = np.nan
    tags = best_tags_many(scores, np.array([0, 3]), LABELS, probabilities=True, prior=PRIOR)
    assert len(tags) == 3 and tags[0] == 0


def joined_texts(seed: int, sharpness: float) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Texts of one-character tokens, each followed by a space or not (words of 1-3 tokens), some CJK; tokenizer word
    ids that split differently."""
    rng = np.random.default_rng(seed)
    texts, spans, words, lengths = [], [], [], []
    for n in rng.choice([0, 1, 2, 4, 7, 11], size=40):
        text, word = "", 0
        for i in range(n):
            spans.append([len(text), len(text) + 1])
            words.append(word)
            text += rng.choice(list("abcxyz北京")) + (" " if rng.random() < 0.5 else "")
            word += int(rng.random() < 0.6)
        texts.append(text)
        lengths.append(n)
    scores = softmax(rng.normal(size=(sum(lengths), len(LABELS))) * sharpness)
    bounds = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    return texts, bounds, scores, np.array(spans, dtype=np.int64).reshape(-1, 2), np.array(words, dtype=np.int64)


@pytest.mark.parametrize("sharpness", [0.5, 3.0, 40.0])
@pytest.mark.parametrize("prior", [None, PRIOR], ids=["rule", "prior"])
@pytest.mark.parametrize("boundaries", ["whitespace", "tokenizer"])
def test_word_level_entities_equal_the_text_by_text_decoder(sharpness, prior, boundaries, monkeypatch):
    monkeypatch.setattr(tag_batch, "BATCH_SEARCH", 1)
    texts, bounds, scores, spans, words = joined_texts(int(sharpness * 10) + 1, sharpness)
    for strategy in ("first", "average", "max"):
        for decoding in ("bio", "argmax"):
            got = word_entities(texts, bounds, scores, spans, words, LABELS, strategy, frozenset({"O"}), boundaries,
                                decoding, prior)  # fmt: skip
            want = [aggregate(t, scores[a:b], spans[a:b], words[a:b], LABELS, strategy, frozenset({"O"}), boundaries,
                              decoding, prior) for t, a, b in zip(texts, bounds, bounds[1:])]  # fmt: skip
            assert [[(e.entity_group, e.word, e.start, e.end) for e in x] for x in got] == [
                [(e.entity_group, e.word, e.start, e.end) for e in x] for x in want
            ], (strategy, decoding)
            assert [[e.score for e in x] for x in got] == [[pytest.approx(e.score, rel=1e-6) for e in x] for x in want]
            assert sum(len(x) for x in want) > 0


@pytest.mark.parametrize("aggregation", ["simple", "none", "first", "average", "max"])
def test_the_tagger_decodes_few_texts_one_by_one_and_many_at_once_alike(tiny_token_bundle, aggregation):
    """``Tagger.decode`` takes the text-by-text decoder below FEW_TEXTS texts (one request, batch 1) and the batched
    one from there: the same entities for the same texts either way."""
    from bertdeploy.runtime import load

    texts = ["i love the movie at night", "The Food Service was good today, thanks!", "book", "my app login was slow"]
    assert len(texts) >= tag_batch.FEW_TEXTS
    with load(tiny_token_bundle, variant="fp32", threads=1) as tagger:
        together = tagger.predict(texts, aggregation=aggregation, ignore_labels=None)
        alone = [tagger.predict([t], aggregation=aggregation, ignore_labels=None)[0] for t in texts]
    key = [[(e.entity_group, e.start, e.end, e.index) for e in x] for x in together]
    assert key == [[(e.entity_group, e.start, e.end, e.index) for e in x] for x in alone]
    assert sum(len(x) for x in together) >= len(texts)
    assert [[e.score for e in x] for x in together] == [[pytest.approx(e.score, rel=1e-6) for e in x] for x in alone]
