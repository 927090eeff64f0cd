"""The hidden-state term of ``distill --hidden-loss``: the layer map, the loss against a hand computation (padding
excluded, the teacher's states used), a run end to end with its projections saved and restored on resume, and
bad inputs (no PyTorch teacher, another vocabulary, a bad weight)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from helpers import build_tiny_model
from safetensors import safe_open
from test_distill import _cfg

from bertdeploy.errors import UserError
from bertdeploy.training import DistillConfig, distill, hidden


def test_layer_map_spreads_the_student_over_the_teacher():
    assert hidden.layer_map(4, 6) == [0, 2, 3, 5, 6]
    assert hidden.layer_map(4, 12) == [0, 3, 6, 9, 12]
    assert hidden.layer_map(2, 2) == [0, 1, 2]


def _distiller(model_dir):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    student = AutoModelForSequenceClassification.from_pretrained(model_dir)
    module = hidden.build(str(model_dir), student, tok, ["good day", "bad time"])
    batch = dict(tok(["good day to you", "bad"], padding=True, return_tensors="pt"))
    return module, student, batch


def test_the_loss_is_the_masked_mse_of_the_projected_states(tiny_model_dir):
    """By hand: per layer, the squared error summed over real tokens and dims, over tokens x width; the mean over
    layers. Padded positions do not count, and another teacher gives another loss."""
    module, student, batch = _distiller(tiny_model_dir)
    states = student(**batch, output_hidden_states=True).hidden_states
    with torch.no_grad():
        teacher = module.teacher(**batch, output_hidden_states=True).hidden_states
    mask = batch["attention_mask"].bool()
    assert not mask.all(), "the batch has padding"
    expected = []
    for proj, s, t in zip(module.proj, states, module.mapping, strict=True):
        err = (proj(s) - teacher[t])[mask]
        expected.append(err.pow(2).mean())
    loss = module(states, batch)
    assert loss.item() == pytest.approx(torch.stack(expected).mean().item(), rel=1e-5)
    padded = tuple(torch.where(mask.unsqueeze(-1), s, s + 100.0) for s in states)
    assert module(padded, batch).item() == pytest.approx(loss.item(), rel=1e-5)
    with torch.no_grad():
        for p in module.teacher.parameters():
            p.add_(0.5)
    assert module(states, batch).item() != pytest.approx(loss.item(), rel=1e-3)


def test_identity_projections_of_the_teachers_own_states_cost_nothing(tiny_model_dir):
    module, _, batch = _distiller(tiny_model_dir)
    with torch.no_grad():
        for proj in module.proj:
            proj.weight.copy_(torch.eye(proj.weight.shape[0]))
            proj.bias.zero_()
        states = module.teacher(**batch, output_hidden_states=True).hidden_states
    assert module(states, batch).item() == pytest.approx(0.0, abs=1e-10)
    assert module.parameters() and not any(p.requires_grad for p in module.teacher.parameters())
    assert not any(k.startswith("teacher") for k in module.state_dict()), "the teacher is not saved"


def test_a_run_with_the_hidden_loss_saves_and_restores_its_projections(
    tiny_model_dir, tiny_data_dir, tmp_path, monkeypatch
):
    """Killed after epoch 1: the checkpoint holds the projections; resume loads them and finishes the run."""

    class Kill(Exception):
        pass

    def die(row):
        if row["epoch"] >= 2:
            raise Kill

    kw = dict(epochs=2, model=str(tiny_model_dir), student_layers=1, hidden_loss=1.0)
    with pytest.raises(Kill):
        distill(_cfg(tiny_model_dir, tiny_data_dir, tmp_path / "run", **kw), on_epoch=die)
    saved = sorted((tmp_path / "run.partial").glob(f"checkpoint-*/{hidden.PROJECTION_FILE}"))
    assert saved, "the checkpoint holds the projections"
    loaded = []
    original = hidden.load
    monkeypatch.setattr(hidden, "load", lambda module, folder: loaded.append(original(module, folder)) or True)
    r = distill(_cfg(tiny_model_dir, tiny_data_dir, tmp_path / "run", resume=True, **kw))
    assert loaded == [True], "resume restored the projections from the checkpoint"
    assert [e["epoch"] for e in r.history] == [1.0, 2.0]
    info = json.loads((tmp_path / "run" / "train_config.json").read_text())["distill"]["hidden_loss"]
    assert info["weight"] == 1.0 and info["teacher_layers"] == [0, 2] and info["width"] == [32, 32]
    with safe_open(tmp_path / "run" / "model.safetensors", "pt") as f:
        assert f.keys() and not any("proj" in k for k in f.keys()), "the projections are not part of the student"


def test_hidden_loss_needs_a_pytorch_teacher_with_the_students_vocabulary(tiny_bundle, tiny_data_dir, tmp_path):
    with pytest.raises(UserError, match="needs a PyTorch teacher"):
        distill(_cfg(tiny_bundle, tiny_data_dir, tmp_path / "a", hidden_loss=1.0))
    with pytest.raises(UserError, match="needs a run folder"):
        distill(_cfg(tiny_bundle, tiny_data_dir, tmp_path / "b", hidden_loss=1.0, hidden_teacher=str(tiny_bundle)))
    other = build_tiny_model(tmp_path / "teacher")  # the tests' vocabulary; bert-tiny reads the MiniLM one
    with pytest.raises(UserError, match="other token ids than the student's"):
        distill(_cfg(tiny_bundle, tiny_data_dir, tmp_path / "c", hidden_loss=1.0, hidden_teacher=str(other)))
    assert not any((tmp_path / n).exists() for n in ("a", "b", "c"))
    with pytest.raises(UserError, match="hidden_loss"):
        DistillConfig(teacher="t", hidden_loss=-1.0)


def test_cli_hidden_loss_with_a_bundle_teacher_is_one_line_exit_2(tiny_bundle, tiny_data_dir, tmp_path):
    cmd = [sys.executable, "-m", "bertdeploy.cli.__main__", "distill", "--teacher", str(tiny_bundle), "--student",
           "bert-tiny", "--data", str(tiny_data_dir), "--hidden-loss", "1", "-o", str(tmp_path / "r")]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and proc.stderr.startswith("error: --hidden-loss needs a PyTorch teacher")
    assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "r").exists()
