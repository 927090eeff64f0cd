"""The training tags' transition scores in ``bio`` decoding (:class:`bertdeploy.runtime.entities.TagPrior`): counted
by training, carried by the run folder and the manifest, added to the model's log probabilities by training's scores,
the export gate, the runtime and the Triton step alike; the pruned search checked against every sequence by brute
force; bundles without counts keep the BIO rule alone; malformed counts are one error."""

from __future__ import annotations

import itertools
import json
import shutil

import numpy as np
import pytest
from test_decoding import LABELS, _valid, log_softmax

from bertdeploy import load
from bertdeploy.errors import UserError
from bertdeploy.runtime.entities import TagPrior, aggregate, best_tags, count_transitions
from bertdeploy.training.task_tokens import scores

# "B-city I-city" is how a city goes in these made-up training tags; a day is one word; O mostly follows O
SEQUENCES = [[1, 2, 0], [1, 2, 2], [0, 0, 3], [0, 1, 2], [3, 0, 0], [0, 3, 0]] * 5


def prior(weight: float = 0.5) -> TagPrior:
    return TagPrior.from_counts(count_transitions(SEQUENCES, len(LABELS), weight), len(LABELS))


def test_counts_are_sparse_and_become_smoothed_log_probabilities():
    table = count_transitions(SEQUENCES, len(LABELS))
    assert sum(c for _, c in table["start"]) == len(SEQUENCES)
    assert sum(c for *_, c in table["pairs"]) == sum(len(s) - 1 for s in SEQUENCES)
    assert all(c > 0 for *_, c in table["pairs"]) and json.loads(json.dumps(table)) == table
    p = TagPrior.from_counts(table, len(LABELS))
    step = np.exp(p.step / 0.5)
    np.testing.assert_allclose(step.sum(axis=1), 1.0)  # a distribution over the next tag per tag
    assert step[1, 2] == pytest.approx(15.5 / 17.5) and step[0, 4] < 0.05  # B-city -> I-city 15 of 15; O -> I-day 0
    assert np.isfinite(p.step).all() and np.isfinite(p.start).all()  # smoothing: unseen pairs stay possible
    with pytest.raises(ValueError, match="tag ids"):
        count_transitions([[0, 1], [2, -100]], len(LABELS))  # an ignored position is not a tag


@pytest.mark.parametrize("weight", [0.25, 0.5])
def test_the_decoded_path_is_the_best_valid_sequence_with_the_prior_by_brute_force(weight):
    """Exact wherever the best path holds no tag more than SEARCH_MARGIN (8 nats) below its word's best: always at
    these weights (a transition moves a path by at most ~2 nats here)."""
    p = prior(weight)
    rng = np.random.default_rng(11)
    for n in (1, 2, 3, 4):
        for _ in range(25):
            log_p = log_softmax(rng.normal(size=(n, len(LABELS))) * 3)
            paths = [list(q) for q in itertools.product(range(len(LABELS)), repeat=n) if _valid(list(q), LABELS)]

            def total(q: list[int]) -> float:
                return p.start[q[0]] + sum(log_p[t, k] for t, k in enumerate(q)) + sum(p.step[a, b] for a, b in
                                                                                         zip(q, q[1:]))  # fmt: skip

            assert best_tags(log_p, LABELS, prior=p).tolist() == max(paths, key=total)
            assert best_tags(log_p + 4.0, LABELS, prior=p).tolist() == max(paths, key=total), "logits: normalised"


def test_the_search_falls_back_to_every_tag_when_the_likely_ones_allow_no_valid_path():
    """Word 1's only likely tag is I-city, which cannot start a sentence: the search over likely tags finds no
    path and the full search picks the best valid one (B-city, 20 nats down, over O, 30 down)."""
    log_p = np.array([[-30.0, -20.0, 0.0, -40.0, -40.0], [-40.0, -40.0, 0.0, -40.0, -40.0]])
    assert best_tags(log_p, LABELS, prior=prior()).tolist() == [1, 2]


def test_the_prior_decides_what_the_model_leaves_open():
    """Word 2 of "new york" is I-city or O at 0.45 / 0.55; the training tags put I-city after B-city nine times in
    ten: with the prior it is one city of two words, without it a city of one word."""
    text, spans, words = "new york", np.array([[0, 3], [4, 8]]), np.array([0, 1])
    probs = np.array([[0.05, 0.9, 0.0, 0.05, 0.0], [0.55, 0.0, 0.45, 0.0, 0.0]]) + 1e-6
    assert [e.word for e in aggregate(text, probs, spans, words, LABELS)] == ["new"]
    assert [e.word for e in aggregate(text, probs, spans, words, LABELS, prior=prior())] == ["new york"]
    assert best_tags(np.log(probs), LABELS, "argmax", prior=prior()).tolist() == [1, 0], "argmax ignores it"
    # training's scores decode the same way
    gold = np.array([[1, 2]])
    assert scores(np.log(probs)[None], gold, LABELS)["f1"] == 0.0
    assert scores(np.log(probs)[None], gold, LABELS, prior())["f1"] == 1.0


@pytest.mark.parametrize(
    "table",
    [
        [],
        {"pairs": []},
        {"start": [[9, 1]], "pairs": []},
        {"start": [[-1, 1]], "pairs": []},
        {"start": [], "pairs": [[0, 1]]},
        {"start": [], "pairs": [[0, 1, -2]]},
        {"start": [], "pairs": [], "weight": -1},
        {"start": [], "pairs": [], "smoothing": 0},
        {"start": [[0, "x"]], "pairs": []},
    ],  # fmt: skip
)
def test_malformed_counts_are_refused(table):
    with pytest.raises(ValueError, match="tag_transitions"):
        TagPrior.from_counts(table, len(LABELS))


def _bundle_with(tmp_path, tiny_token_bundle, edit):
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_token_bundle, bundle)
    manifest = json.loads((bundle / "bertdeploy.json").read_text())
    edit(manifest)
    (bundle / "bertdeploy.json").write_text(json.dumps(manifest))
    return bundle


def test_the_bundle_carries_the_runs_counts_and_the_runtime_decodes_with_them(tiny_token_bundle, tiny_tagger_dir,
                                                                              tmp_path):  # fmt: skip
    manifest = json.loads((tiny_token_bundle / "bertdeploy.json").read_text())
    assert manifest["tag_transitions"] == json.loads((tiny_tagger_dir / "tag_transitions.json").read_text())
    tagger = load(tiny_token_bundle, variant="fp32", threads=1)
    assert tagger.prior is not None
    texts = ["i love the movie at night", "my food service was so good today", "book this day for work time"]
    outputs = tagger.scores(texts)
    with_prior = tagger.decode(outputs, "none", ignore_labels=None)
    tagger.prior = None
    assert tagger.decode(outputs, "none", ignore_labels=None) != with_prior, "the random tagger's tags change"
    older = load(_bundle_with(tmp_path, tiny_token_bundle, lambda m: m.pop("tag_transitions")), variant="fp32")
    assert older.prior is None and older.predict(texts, "none", ignore_labels=None) == tagger.decode(
        outputs, "none", ignore_labels=None
    ), "a bundle without counts: the BIO rule alone"


def test_a_malformed_table_in_the_manifest_is_one_error_at_load(tiny_token_bundle, tmp_path):
    bundle = _bundle_with(tmp_path, tiny_token_bundle, lambda m: m.update(tag_transitions={"start": 3}))
    with pytest.raises(UserError, match="malformed manifest .*tag_transitions"):
        load(bundle, variant="fp32")
