"""Tag decoding (``decoding="bio"``, the default of the runtime, training's scores and the export gate): the most
probable tag sequence in which ``I-X`` only follows ``B-X`` / ``I-X``, checked against every sequence by brute force;
the argmax whenever it already obeys the rule; entities and entity scores that change with it."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from bertdeploy.runtime.entities import aggregate, best_tags
from bertdeploy.training.task_tokens import scores

LABELS = ["O", "B-city", "I-city", "B-day", "I-day"]


def log_softmax(x: np.ndarray) -> np.ndarray:
    shifted = x - x.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def _valid(path: list[int], labels: list[str]) -> bool:
    for prev, tag in zip([None, *path[:-1]], path):
        name = labels[tag]
        if name.startswith("I-") and (prev is None or labels[prev][2:] != name[2:] or labels[prev] == "O"):
            return False
    return True


def test_the_decoded_path_is_the_best_valid_sequence_by_brute_force():
    rng = np.random.default_rng(7)
    for n in (1, 2, 3, 4):
        for _ in range(25):
            log_p = log_softmax(rng.normal(size=(n, len(LABELS))) * 3)
            paths = [list(p) for p in itertools.product(range(len(LABELS)), repeat=n) if _valid(list(p), LABELS)]
            best = max(paths, key=lambda p: sum(log_p[t, k] for t, k in enumerate(p)))
            assert best_tags(log_p, LABELS).tolist() == best


def test_a_valid_argmax_is_kept_and_a_stray_inside_tag_is_repaired():
    p = np.array([[0.1, 0.6, 0.2, 0.05, 0.05], [0.1, 0.1, 0.7, 0.05, 0.05], [0.9, 0.025, 0.025, 0.025, 0.025]])
    assert best_tags(np.log(p), LABELS).tolist() == [1, 2, 0], "B-city I-city O: valid, unchanged"
    stray = np.array([p[2], [0.05, 0.15, 0.7, 0.05, 0.05]])  # O then I-city: the argmax opens an entity with I-
    assert best_tags(np.log(stray), LABELS, "argmax").tolist() == [0, 2]
    assert best_tags(np.log(stray), LABELS).tolist() == [0, 1], "O B-city: the best sequence that is valid"
    io = ["O", "city", "day"]  # no I- tags: nothing to constrain
    q = np.log(np.array([[0.2, 0.5, 0.3], [0.1, 0.1, 0.8]]))
    assert best_tags(q, io).tolist() == [1, 2] and len(best_tags(np.zeros((0, 3)), io)) == 0


def test_entities_follow_the_decoded_tags():
    """ "paris monday": the argmax tags "monday" I-city after an O, which the pipeline's grouping makes a city; as a
    sequence, O O (0.9 x 0.3) beats O B-city (0.9 x 0.1): no entity. With "paris" likely a city, B-city I-city."""
    text, spans, words = "paris monday", np.array([[0, 5], [6, 12]]), np.array([0, 1])
    second = [0.3, 0.1, 0.5, 0.05, 0.05]
    stray = np.array([[0.9, 0.025, 0.025, 0.025, 0.025], second])
    assert [(e.entity_group, e.word) for e in aggregate(text, stray, spans, words, LABELS, decoding="argmax")] == [
        ("city", "monday")
    ]
    for strategy in ("simple", "first"):
        assert aggregate(text, stray, spans, words, LABELS, strategy) == []
    city = np.array([[0.3, 0.6, 0.05, 0.025, 0.025], second])
    got = aggregate(text, city, spans, words, LABELS, "first")
    assert [(e.entity_group, e.word) for e in got] == [("city", "paris monday")]
    assert got[0].score == pytest.approx(0.55), "the mean of the chosen tags' probabilities (0.6, 0.5)"


def test_training_scores_decode_the_labelled_words():
    ignore = -100
    logits = np.log(np.array([[[0.9, 0.02, 0.02, 0.03, 0.03], [0.05, 0.2, 0.65, 0.05, 0.05],
                                [0.05, 0.05, 0.8, 0.05, 0.05], [0.2] * 5]]))  # fmt: skip
    gold = np.array([[0, 1, 2, ignore]])
    assert scores(logits, gold, LABELS)["f1"] == pytest.approx(1.0), "O I-city I-city decodes to O B-city I-city"
    ids = np.array([[0, 2, 2, 0]])  # tag ids are taken as they are
    assert scores(ids, gold, LABELS)["f1"] == pytest.approx(1.0)
