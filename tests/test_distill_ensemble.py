"""``distill --teacher A,B,C``: an ensemble teacher whose soft labels are the log of its members' mean probabilities
(members in their own label order and tokenization, NaN rows of cut-off words left out), resolved, described and
trained from end to end; what is refused."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from bertdeploy.errors import UserError
from bertdeploy.training import DistillConfig, distill
from bertdeploy.training import teacher as teacher_mod
from bertdeploy.training.teacher import Teacher, ensemble, mean_probabilities, resolve_teacher, score


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_the_ensemble_logits_are_the_log_of_the_mean_probabilities():
    rng = np.random.default_rng(0)
    a, b, c = (rng.normal(size=(5, 4)).astype(np.float32) * 3 for _ in range(3))
    got = mean_probabilities([a, b, c])
    assert np.allclose(np.exp(got), (_softmax(a) + _softmax(b) + _softmax(c)) / 3, atol=1e-6)
    assert np.allclose(np.exp(got).sum(axis=1), 1, atol=1e-6)
    one = mean_probabilities([a, a])
    assert np.allclose(one, a - np.log(np.exp(a).sum(axis=1, keepdims=True)), atol=1e-5), "= log_softmax(a)"
    # the mean probabilities (not the mean logits, a geometric mean) decide: two members lean one way, one is sure
    confident, unsure = np.array([[10.0, 0.0]]), np.array([[-1.0, 1.0]])
    assert (confident + 2 * unsure).argmax() == 0 and mean_probabilities([confident, unsure, unsure]).argmax() == 1


def test_a_words_nan_row_is_left_out_of_its_mean_and_stays_nan_when_every_member_cut_it():
    a = np.array([[1.0, 2.0], [np.nan, np.nan], [np.nan, np.nan]], dtype=np.float32)
    b = np.array([[2.0, 1.0], [0.0, 3.0], [np.nan, np.nan]], dtype=np.float32)
    got = mean_probabilities([a, b])
    assert np.allclose(np.exp(got[0]), [0.5, 0.5], atol=1e-6)
    assert np.allclose(got[1], np.log(_softmax(b[1:2]))[0], atol=1e-6), "b alone"
    assert np.isnan(got[2]).all()


def _member(tmp_path, name: str, labels: list[str], logits: np.ndarray) -> tuple[Teacher, np.ndarray]:
    folder = tmp_path / name
    folder.mkdir()
    return Teacher("run", folder, labels, 16, name * 64, task="token-classification"), logits


def test_members_are_put_in_the_first_ones_label_order_before_the_mean(tmp_path, monkeypatch):
    x = np.array([[3.0, 0.0, -1.0], [0.0, 2.0, 1.0]], dtype=np.float32)
    first = _member(tmp_path, "a", ["O", "B-x", "I-x"], x)
    second = _member(tmp_path, "b", ["I-x", "O", "B-x"], x[:, [2, 0, 1]])  # the same model, columns permuted
    rows = {t.path: logits for t, logits in (first, second)}
    monkeypatch.setattr(teacher_mod, "_score_run", lambda t, inputs, batch_size: rows[t.path])
    both = ensemble([first[0], second[0]])
    assert both.kind == "ensemble" and both.labels == ["O", "B-x", "I-x"] and both.per_word
    assert both.identity not in (first[0].identity, second[0].identity)
    assert ensemble([second[0], first[0]]).identity != both.identity, "order changes the label order: new cache"
    got = score(both, [["a", "b"]])
    assert np.allclose(got, np.log(_softmax(x)), atol=1e-5), "identical members: the member's own probabilities"
    assert [m["path"] for m in both.describe()["members"]] == [str(first[0].path), str(second[0].path)]


def test_resolve_names_an_ensemble_by_commas_and_a_folder_with_a_comma_as_one(tiny_tagger_dir, tiny_token_bundle,
                                                                              tmp_path):  # fmt: skip
    both = resolve_teacher(f"{tiny_tagger_dir}, {tiny_token_bundle}", "fp32")
    assert both.kind == "ensemble" and [m.kind for m in both.members] == ["run", "bundle"]
    sentences = [["i", "love", "the", "movie"], ["food", "was", "bad"]]
    alone = score(both.members[0], sentences)
    assert np.allclose(score(both, sentences), np.log(_softmax(alone)), atol=1e-4), "a model and its export agree"
    comma = tmp_path / "a,b"
    comma.symlink_to(tiny_tagger_dir)
    assert resolve_teacher(str(comma), "fp32").kind == "run"
    with pytest.raises(UserError, match="teacher not found: /nonexistent"):
        resolve_teacher(f"{tiny_tagger_dir},/nonexistent", "fp32")


def test_members_of_different_tasks_are_refused(tiny_tagger_dir, tiny_model_dir):
    with pytest.raises(UserError, match="the ensemble's teachers disagree"):
        resolve_teacher(f"{tiny_tagger_dir},{tiny_model_dir}", "fp32")


def _cfg(teacher: str, data, out, **kw) -> DistillConfig:
    base = dict(teacher=teacher, model="bert-tiny", data=str(data), output=str(out), epochs=1, batch_size=16,
                lr=2e-3, max_length=32, report_to=["none"], logging_steps=5, train_size=40)  # fmt: skip
    return DistillConfig(**{**base, **kw})


def test_a_student_learns_from_a_run_and_a_bundle_together(tiny_tagger_dir, tiny_token_bundle, tiny_token_dir,
                                                           tmp_path):  # fmt: skip
    """The run (PyTorch) and its bundle (ONNX runtime) as one ensemble: both score every word, the soft labels are
    their mean probabilities, the run folder records the members."""
    spec = f"{tiny_tagger_dir},{tiny_token_bundle}"
    r = distill(_cfg(spec, tiny_token_dir, tmp_path / "run"))
    saved = json.loads((r.output / "train_config.json").read_text())
    info = saved["distill"]["teacher"]
    assert saved["teacher"] == spec and info["kind"] == "ensemble" and info["cache"] == "computed"
    assert [m["kind"] for m in info["members"]] == ["run", "bundle"]
    assert 0 <= r.final["f1"] <= 1


def test_an_output_inside_a_member_is_refused(tiny_tagger_dir, tiny_token_bundle, tiny_token_dir):
    cfg = _cfg(f"{tiny_token_bundle},{tiny_tagger_dir}", tiny_token_dir, tiny_tagger_dir / "student")
    with pytest.raises(UserError, match="lies inside the input"):
        distill(cfg)


def test_cli_a_missing_member_is_one_line_exit_2(tiny_tagger_dir, tiny_token_dir, tmp_path):
    cmd = [sys.executable, "-m", "bertdeploy.cli.__main__", "distill", "--teacher", f"{tiny_tagger_dir},/missing/run",
           "--student", "bert-tiny", "--data", str(tiny_token_dir), "-o", str(tmp_path / "run")]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and proc.stderr.startswith("error: teacher not found: /missing/run")
    assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "run").exists()
