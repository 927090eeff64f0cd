"""``distill --augment K``: the perturbed transfer set (deterministic for a seed, deduplicated, labels never seen),
its token-list variant (the word <-> tag alignment), the teacher's logits cached and reused, the CLI end to end."""

from __future__ import annotations

import json
import random
import subprocess
import sys

import numpy as np
import pytest
from helpers import TINY_LABELS, tiny_texts, write_csv

from bertdeploy.errors import UserError
from bertdeploy.training import DistillConfig, distill
from bertdeploy.training import augment as aug
from bertdeploy.training import teacher as teacher_mod

TEXTS = ["the movie was great fun", "a slow and boring film", "great acting", "play the new song by adele now",
         "what is the weather in paris tomorrow", "book a table for two"]  # fmt: skip


def test_augmentation_is_deterministic_for_a_seed_and_differs_across_seeds():
    a, b = aug.augment_texts(TEXTS, 4, seed=7), aug.augment_texts(TEXTS, 4, seed=7)
    assert a == b and len(a) > len(TEXTS)
    assert aug.augment_texts(TEXTS, 4, seed=8) != a


def test_copies_are_unique_and_never_an_original():
    texts = ["one two three four five six seven", "a b", "x"] * 3  # repeated sources, short ones
    out = aug.augment_texts(texts, 16, seed=0)
    assert len(out) == len(set(out)), "no duplicates among the copies"
    assert not set(out) & {" ".join(t.split()) for t in texts}, "no copy equals a source text"
    assert len(out) <= 16 * len(texts) and "" not in out


def test_perturbation_masks_swaps_and_windows():
    words = "w0 w1 w2 w3 w4 w5 w6 w7".split()
    p = aug.Perturbation(p_mask=1.0, p_swap=0.0, p_ngram=0.0)
    assert aug.perturb_words(words, ["v"], random.Random(0), p) == (["[MASK]"] * 8, range(8))
    p = aug.Perturbation(p_mask=0.0, p_swap=1.0, p_ngram=0.0)
    assert aug.perturb_words(words, ["v"], random.Random(0), p)[0] == ["v"] * 8
    p = aug.Perturbation(p_mask=0.0, p_swap=0.0, p_ngram=1.0, max_ngram=3)
    for seed in range(20):
        out, window = aug.perturb_words(words, ["v"], random.Random(seed), p)
        assert 1 <= len(window) <= 3 and out == words[window.start : window.stop]


def test_token_copies_keep_the_word_to_tag_alignment():
    """Masks and swaps keep each word's position; a window slices positions: tags sliced by ``window`` line up."""
    sentences = [["play", "song", "by", "adele", "on", "spotify"], ["rain", "in", "paris"]]
    tags = [["O", "B-obj", "O", "B-artist", "O", "B-service"], ["O", "O", "B-city"]]
    out = aug.augment_sentences(sentences, 8, seed=3, p=aug.Perturbation(p_mask=0.2, p_swap=0.2, p_ngram=0.5))
    assert out and any(len(a.window) < len(sentences[a.source]) for a in out), "some windows cut"
    for a in out:
        src = sentences[a.source]
        kept = src[a.window.start : a.window.stop]
        assert len(a.words) == len(kept) == len(tags[a.source][a.window.start : a.window.stop])
        for w, orig in zip(a.words, kept, strict=True):
            assert w in (orig, "[MASK]") or w in {x for s in sentences for x in s}
    assert len({a.words for a in out}) == len(out) and not {a.words for a in out} & {tuple(s) for s in sentences}


def test_cjk_characters_are_words():
    assert aug.split_words("北京 weather 今天好") == ["北", "京", "weather", "今", "天", "好"]
    assert aug.join_words(["北", "京", "weather", "今", "天"]) == "北京 weather 今天"


@pytest.mark.parametrize("copies", [-1, 65, 2.5, True])
def test_bad_copy_counts_are_refused(copies):
    with pytest.raises(UserError, match="augment"):
        aug.augment_texts(TEXTS, copies, seed=0)


@pytest.mark.parametrize("value", [-1, 65])
def test_config_refuses_bad_augment(value):
    with pytest.raises(UserError, match="augment must be in"):
        DistillConfig(teacher="t", augment=value)


def test_the_default_augments_only_a_pruned_student():
    assert DistillConfig(teacher="t").copies(1000) == 0
    assert DistillConfig(teacher="t", student_init="t").copies(1000) == 32  # the most: 1,000 snips rows, 3 layers
    assert DistillConfig(teacher="t", student_init="t").copies(4000) == 16
    assert DistillConfig(teacher="t", student_init="t").copies(8000) == 8
    assert DistillConfig(teacher="t", student_init="t").copies(16_000) == 4  # the emotion transfer set: 64,000
    assert DistillConfig(teacher="t", student_init="t").copies(67_349) == 2  # SST-2: the minimum (1 was -1.03)
    assert DistillConfig(teacher="t", student_init="t").copies(500_000) == 2
    assert DistillConfig(teacher="t", student_init="t", augment=0).copies(1000) == 0
    assert DistillConfig(teacher="t", student_init="t").lr == 1e-4
    assert DistillConfig(teacher="t").lr == 5e-5
    assert DistillConfig(teacher="t", student_init="t", lr=3e-4).lr == 3e-4


def _cfg(teacher, data, out, **kw) -> DistillConfig:
    base = dict(teacher=str(teacher), model="bert-tiny", data=str(data), output=str(out), epochs=1, batch_size=16,
                lr=1e-3, max_length=32, report_to=["none"], logging_steps=2, augment=3)  # fmt: skip
    return DistillConfig(**{**base, **kw})


@pytest.fixture
def scored(monkeypatch, tmp_path):
    """Every batch of texts the teacher scores, with the transfer cache inside tmp_path."""
    monkeypatch.setenv("BERTDEPLOY_CACHE", str(tmp_path / "cache"))
    calls: list[list[str]] = []
    real = teacher_mod._score_bundle

    def spy(teacher, texts, batch_size):
        calls.append(list(texts))
        return real(teacher, texts, batch_size)

    monkeypatch.setattr(teacher_mod, "_score_bundle", spy)
    return calls


def test_distill_scores_the_copies_once_and_reuses_them(tiny_bundle, tiny_data_dir, tmp_path, scored):
    r = distill(_cfg(tiny_bundle, tiny_data_dir, tmp_path / "a"))
    info = r.teacher["augment"]
    assert info["cache"] == "computed" and 120 < info["texts"] <= 3 * 120
    assert r.speed["train_rows"] == 120 + info["texts"]
    copies = aug.augment_texts([t for t, _ in tiny_texts(120, seed=1)], 3, seed=42)
    assert scored[-1] == copies, "the teacher (through the ONNX runtime) scored exactly the copies"
    cache = list((tmp_path / "cache" / "transfer").glob("transfer-k3-seed42-*.npz"))
    assert len(cache) == 1 and not list(cache[0].parent.glob("*.tmp*"))
    saved = json.loads((tmp_path / "a" / "train_config.json").read_text())
    assert saved["augment"] == 3 and saved["distill"]["teacher"]["augment"]["texts"] == info["texts"]

    scored.clear()
    r2 = distill(_cfg(tiny_bundle, tiny_data_dir, tmp_path / "b", lr=5e-4))  # another run, same teacher/data/seed
    assert r2.teacher["augment"]["cache"] == "hit"
    assert all(c != copies for c in scored) and sum(map(len, scored)) == 120 + 30, "only train + eval texts"
    scored.clear()
    r3 = distill(_cfg(tiny_bundle, tiny_data_dir, tmp_path / "c", seed=43))
    assert r3.teacher["augment"]["cache"] == "computed", "another seed is another transfer set"


def test_labels_never_reach_the_augmentation(tiny_bundle, tmp_path, monkeypatch, scored):
    """The same texts under other labels give the same copies: the augmentation is handed the texts only."""
    seen = []
    real = aug.augment_texts
    monkeypatch.setattr(aug, "augment_texts", lambda texts, *a, **kw: seen.append(list(texts)) or real(texts, *a, **kw))
    rows = tiny_texts(120, seed=1)
    copies = {}
    for name, shift in (("d1", 0), ("d2", 1)):
        labels = TINY_LABELS
        data = tmp_path / name
        write_csv(data / "train.csv", [(t, labels[(labels.index(y) + shift) % 3]) for t, y in rows])
        write_csv(data / "validation.csv", tiny_texts(30, seed=2))
        r = distill(_cfg(tiny_bundle, data, tmp_path / f"run-{name}", alpha=0.9))
        copies[name] = r.teacher["augment"]
    assert seen[0] == seen[1] == [t for t, _ in rows]
    assert copies["d1"]["texts"] == copies["d2"]["texts"] and copies["d2"]["cache"] == "hit"


def test_hard_labels_only_adds_no_copies(tiny_bundle, tiny_data_dir, tmp_path, scored):
    r = distill(_cfg(tiny_bundle, tiny_data_dir, tmp_path / "run", alpha=0.0))
    assert r.teacher["augment"] is None and r.speed["train_rows"] == 120


def test_a_corrupt_cache_is_scored_again(tiny_bundle, tiny_data_dir, tmp_path, scored):
    distill(_cfg(tiny_bundle, tiny_data_dir, tmp_path / "a", train_size=40))
    (cache,) = (tmp_path / "cache" / "transfer").glob("*.npz")
    cache.write_bytes(b"not a numpy file")
    r = distill(_cfg(tiny_bundle, tiny_data_dir, tmp_path / "b", train_size=40))
    assert r.teacher["augment"]["cache"] == "computed"
    with np.load(cache, allow_pickle=False) as f:
        assert f["logits"].shape == (r.teacher["augment"]["texts"], 3)


def _cli(*args, env_cache):
    import os

    env = {**os.environ, "BERTDEPLOY_CACHE": str(env_cache)}
    cmd = [sys.executable, "-m", "bertdeploy.cli.__main__", "distill", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)


def test_cli_augment_end_to_end_and_bad_values(tiny_bundle, tiny_data_dir, tmp_path):
    common = ["--teacher", str(tiny_bundle), "--student", "bert-tiny", "--data", str(tiny_data_dir),
              "--epochs", "1", "--max-length", "32", "--train-size", "40", "report_to=none"]  # fmt: skip
    proc = _cli(*common, "--augment", "2", "-o", str(tmp_path / "run"), env_cache=tmp_path / "cache")
    assert proc.returncode == 0, proc.stderr[-2000:]
    saved = json.loads((tmp_path / "run" / "train_config.json").read_text())
    assert saved["augment"] == 2 and saved["distill"]["teacher"]["augment"]["texts"] > 0
    for bad, message in (("-3", "error: augment must be in [0, 64]"), ("many", "")):
        proc = _cli(*common, "--augment", bad, "-o", str(tmp_path / "bad"), env_cache=tmp_path / "cache")
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
        assert proc.stderr.startswith(message) if message else "many" in proc.stderr
    assert not (tmp_path / "bad").exists()
