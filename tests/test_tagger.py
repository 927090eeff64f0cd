"""The token-classification head: entities equal to the transformers pipeline's, character offsets into the raw
text, windows that lose nothing at an edge, pre-split words, and one clear error per bad option."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bertdeploy.errors import UserError
from bertdeploy.runtime import Classifier, Entity, Tagger, load

TEXTS = [
    "i love the movie at night",
    "The Food Service was good today, thanks!",
    "my app login was so slow at work time",
    "book",
]


@pytest.fixture(scope="module")
def tagger(tiny_token_bundle) -> Tagger:
    with load(tiny_token_bundle, variant="fp32", threads=1) as t:
        yield t


@pytest.fixture(scope="module")
def windowed_bundle(tmp_path_factory, tiny_tagger_dir, tiny_token_dir):
    """The tiny tagger exported with max_length 12: 10 word pieces per window, stride 2."""
    from bertdeploy.exporter import ExportConfig, export

    out = tmp_path_factory.mktemp("windowed") / "bundle"
    export(ExportConfig(run_dir=str(tiny_tagger_dir), output=str(out), data=str(tiny_token_dir), max_length=12))
    return out


def test_load_returns_the_head_of_the_bundle_task(tiny_token_bundle, tiny_bundle, tagger):
    assert isinstance(tagger, Tagger) and tagger.task.name == "token-classification"
    with load(tiny_bundle, variant="fp32") as clf:
        assert isinstance(clf, Classifier) and clf.task.name == "text-classification"


@pytest.mark.parametrize("aggregation", ["none", "simple", "first", "average", "max"])
def test_entities_equal_the_transformers_pipeline(tiny_tagger_dir, tagger, aggregation):
    from transformers import AutoModelForTokenClassification, AutoTokenizer, pipeline

    model = AutoModelForTokenClassification.from_pretrained(tiny_tagger_dir)
    pipe = pipeline("token-classification", model=model, tokenizer=AutoTokenizer.from_pretrained(tiny_tagger_dir),
                    aggregation_strategy=aggregation)  # fmt: skip
    ours = tagger.predict(TEXTS, aggregation=aggregation, word_boundaries="tokenizer", decoding="argmax")
    for text, theirs, mine in zip(TEXTS, pipe(TEXTS), ours, strict=True):
        key = "entity" if aggregation == "none" else "entity_group"
        assert [(d[key], d["start"], d["end"]) for d in theirs] == [(e.entity_group, e.start, e.end) for e in mine]
        np.testing.assert_allclose([d["score"] for d in theirs], [e.score for e in mine], atol=1e-5)
        assert all(e.word == text[e.start : e.end] for e in mine)  # the pipeline lower-cases: "food service"
        if aggregation == "none":
            assert [d["index"] for d in theirs] == [e.index for e in mine]
    assert sum(map(len, ours)) > 3  # the comparison compared something


def test_words_are_slices_of_the_raw_text_for_chinese_and_odd_spacing(tagger):
    texts = ["北京 movie  at\tnight", "今天的food service很好"]
    for text, entities in zip(texts, tagger.predict(texts, aggregation="none", ignore_labels=None), strict=True):
        assert entities and all(e.word == text[e.start : e.end] and e.word.strip() == e.word for e in entities)
        assert [e.word for e in entities if "\u4e00" <= e.word[0] <= "\u9fff"] == [c for c in text if c > "\u4e00"]
    for text, entities in zip(texts, tagger.predict(texts, aggregation="simple", ignore_labels=None), strict=True):
        covered, end = set(), 0
        for e in entities:  # groups in text order, never overlapping, covering every non-space character
            assert e.start >= end and e.word == text[e.start : e.end]
            covered |= set(range(e.start, e.end))
            end = e.end
        assert {i for i, c in enumerate(text) if not c.isspace()} <= covered


def test_word_level_aggregation_follows_whitespace_words_by_default(tagger):
    text = "the food-service was good,today 北京"
    scores = tagger.scores([text])
    tokens = tagger.decode(scores, aggregation="none", ignore_labels=None)[0]
    assert [t.word for t in tokens] == ["the", "food", "-", "service", "was", "good", ",", "today", "北", "京"]
    starts, ends = (
        {0: "the", 4: "food-service", 17: "was", 21: "good,today", 32: "北", 33: "京"},
        {3, 16, 20, 31, 33, 34},
    )
    tags = {t.start: t.entity_group for t in tokens}
    for group in tagger.decode(scores, aggregation="first", ignore_labels=None)[0]:
        assert group.start in starts and group.end in ends  # groups are made of whole whitespace words
        assert tags[group.start].split("-", 1)[-1] == group.entity_group  # typed by the word's first token
    with pytest.raises(UserError, match="word_boundaries must be one of whitespace, tokenizer"):
        tagger.predict([text], word_boundaries="spaces")


def test_pre_split_words_point_into_the_space_joined_text(tagger):
    words = ["The", "Food", "Service", "was", "good"]
    [split] = tagger.predict([words], aggregation="none", ignore_labels=None)
    [joined] = tagger.predict([" ".join(words)], aggregation="none", ignore_labels=None)
    assert split == joined and [e.word for e in split] == words


def test_entity_dicts_have_the_pipeline_keys(tagger):
    grouped = tagger.predict("i love the movie at night")[0][0].to_dict()
    assert set(grouped) == {"entity_group", "score", "word", "start", "end"}
    token = tagger.predict("i love the movie at night", aggregation="none")[0][0].to_dict()
    assert set(token) == {"entity", "score", "index", "word", "start", "end"}
    json.dumps(token)  # plain Python values


def test_scores_slice_and_concat_like_the_texts(tagger):
    scores = tagger.scores(TEXTS)
    assert len(scores) == len(TEXTS)
    parts = [scores[0:1], scores[1:3], scores[3:4]]
    assert [e for p in parts for e in tagger.decode(p)] == tagger.decode(scores)
    assert tagger.decode(type(scores).concat(parts)) == tagger.decode(scores)
    assert tagger.forward_texts(TEXTS[:2]).texts == tuple(TEXTS[:2])


def test_a_long_text_is_windowed_and_every_token_comes_from_its_most_central_window(windowed_bundle):
    text = " ".join(["i love the movie at night and my app login was so slow at work time"] * 3)
    with load(windowed_bundle, variant="fp32", threads=1) as tagger:
        assert tagger.stride == 2
        encoded = tagger.encode([text])
        assert encoded.truncated == 1 and len(encoded.lengths) > 3
        tokens = tagger.predict([text], aggregation="none", ignore_labels=None, decoding="argmax")[0]
        assert [e.word for e in tokens] == text.split()  # every word once, in order: nothing lost at an edge
        expected = []
        for row in range(len(encoded.lengths)):  # each window alone, as a text of its own (single-piece words)
            sl = slice(int(encoded.offsets[row]) + 1, int(encoded.offsets[row] + encoded.lengths[row]) - 1)
            start, end = int(encoded.spans[sl][0, 0]), int(encoded.spans[sl][-1, 1])
            alone = tagger.predict([text[start:end]], aggregation="none", ignore_labels=None, decoding="argmax")[0]
            n = len(alone)
            expected += [(min(i + 1, n - i), e.start + start, e.entity_group, e.score) for i, e in enumerate(alone)]
        best = {}
        for edge, start, tag, score in expected:
            if start not in best or edge > best[start][0]:
                best[start] = (edge, tag, score)
        assert [(e.entity_group, round(e.score, 5)) for e in tokens] == [
            (best[e.start][1], round(best[e.start][2], 5)) for e in tokens
        ]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda t: t.predict(["ok"], aggregation="longest"), "aggregation must be one of none, simple"),
        (lambda t: t.predict(["ok"], ignore_labels="O"), "ignore_labels must be a list"),
        (lambda t: t.predict(["ok"], decoding="crf"), "decoding must be one of bio, argmax"),
        (lambda t: t.predict(["ok", "  "]), "text #1 is empty or blank"),
        (lambda t: t.predict([["ok", ""]]), "text #0: pre-split words"),
        (lambda t: t.predict([3]), "text #0 is int"),
        (lambda t: t.predict({"text": "ok"}), "texts must be a string or a sequence"),
    ],
)
def test_bad_calls_are_one_user_error(tagger, call, message):
    with pytest.raises(UserError, match=message):
        call(tagger)


def test_entities_are_frozen_values():
    e = Entity("PER", 0.5, "Ann", 0, 3)
    with pytest.raises(AttributeError):
        e.word = "Bob"  # type: ignore[misc]
