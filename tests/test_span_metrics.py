"""The character-span entity scorer (bertdeploy.metrics): the same entities and the same F1 as seqeval when both
sides come from word tags, whatever the tag sequence (ill-formed BIO included); exact span + type matching."""

from __future__ import annotations

import random

import pytest
from helpers import TINY_TAGS, tiny_token_sentences
from seqeval.metrics import f1_score, precision_score, recall_score
from seqeval.metrics.sequence_labeling import get_entities

from bertdeploy.metrics import bio_chunks, gold_spans, span_metrics, word_spans

ODD = [["I-ITEM", "I-ITEM", "O", "I-TIME"], ["B-ITEM", "I-TIME", "I-TIME"], ["O", "B-X-Y", "I-X-Y", "B-X-Y"], ["O"], []]


def _noisy(tags: list[str], rng: random.Random) -> list[str]:
    """``tags`` with about a third of them replaced by any tag (I- after O, type switches ...)."""
    return [rng.choice(TINY_TAGS) if rng.random() < 0.35 else t for t in tags]


@pytest.mark.parametrize("tags", [*ODD, *(t for _, t in tiny_token_sentences(20, seed=4))])
def test_chunks_are_seqevals(tags):
    assert bio_chunks(tags) == get_entities(list(tags))


def test_span_f1_equals_seqeval_when_predictions_are_word_tags():
    rng = random.Random(0)
    sentences = tiny_token_sentences(200, seed=7)
    gold = [tags for _, tags in sentences]
    pred = [_noisy(tags, rng) for tags in gold]
    got = span_metrics([gold_spans(w, g) for (w, _), g in zip(sentences, gold)],
                       [gold_spans(w, p) for (w, _), p in zip(sentences, pred)])  # fmt: skip
    assert 0.2 < got["f1"] < 0.95  # a real mix of hits and misses
    assert got["f1"] == pytest.approx(f1_score(gold, pred))
    assert got["precision"] == pytest.approx(precision_score(gold, pred))
    assert got["recall"] == pytest.approx(recall_score(gold, pred))
    assert set(got["per_type"]) == {"ITEM", "TIME"} and got["n"] == 200
    same = span_metrics([gold_spans(w, t) for w, t in sentences], [gold_spans(w, t) for w, t in sentences])
    assert same["f1"] == 1.0 and same["per_type"]["ITEM"]["support"] > 0


def test_spans_point_into_the_space_joined_sentence():
    words = ["play", "the", "new", "york", "times", "on", "弗萊堡"]
    tags = ["O", "O", "B-org", "I-org", "I-org", "O", "B-city"]
    text = " ".join(words)
    spans = gold_spans(words, tags)
    assert [text[a:b] for _, a, b in spans] == ["new york times", "弗萊堡"]
    assert [k for k, _, _ in spans] == ["org", "city"]
    assert word_spans(["ab", "c"]) == [(0, 2), (3, 4)]
    with pytest.raises(ValueError):
        gold_spans(words, tags[:-1])


def test_only_exact_span_and_type_match():
    gold = [[("org", 9, 23)]]
    for wrong in ([("org", 9, 22)], [("city", 9, 23)], [("org", 8, 23)]):
        assert span_metrics(gold, [wrong])["f1"] == 0.0
    got = span_metrics(gold, [[("org", 9, 23), ("city", 0, 4)]])
    assert (got["precision"], got["recall"]) == (0.5, 1.0)
    assert span_metrics([[]], [[]])["f1"] == 0.0
