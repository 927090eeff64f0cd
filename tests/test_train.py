"""Training end to end on the tiny model: the run folder, metrics, resume after an interruption, bad inputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bertdeploy.errors import UserError
from bertdeploy.training import TrainConfig, train


def _cfg(model, data, out, **kw) -> TrainConfig:
    base = dict(model=str(model), data=str(data), output=str(out), epochs=1, batch_size=16, lr=1e-3,
                max_length=32, report_to=["none"], logging_steps=2)  # fmt: skip
    return TrainConfig(**{**base, **kw})


def test_one_epoch_writes_a_complete_run(tiny_model_dir, tiny_data_dir, tmp_path):
    rows = []
    r = train(_cfg(tiny_model_dir, tiny_data_dir, tmp_path / "run", padding="static"), on_epoch=rows.append)
    out = tmp_path / "run"
    assert r.output == out and out.is_dir() and not (tmp_path / "run.partial").exists()
    for name in (
        "model.safetensors",
        "config.json",
        "tokenizer.json",
        "train_config.json",
        "metrics.json",
        "curves.png",
    ):
        assert (out / name).is_file(), name
    assert not list(out.glob("*.bin")), "no pickles in a run folder"
    config = json.loads((out / "config.json").read_text())
    assert config["id2label"] == {"0": "negative", "1": "neutral", "2": "positive"}
    metrics = json.loads((out / "metrics.json").read_text())
    assert [e["epoch"] for e in metrics["epochs"]] == [1.0]
    assert metrics["final"]["split"] == "test" and metrics["final"]["n"] == 30
    for key in ("accuracy", "f1_macro", "f1_micro", "f1_weighted", "precision_macro", "recall_macro"):
        assert 0.0 <= metrics["final"][key] <= 1.0
    assert len(metrics["final"]["confusion_matrix"]) == 3
    assert metrics["speed"]["train_samples_per_second"] > 0
    assert rows and rows[0]["epoch"] == 1.0 and "f1_macro" in rows[0] and rows[0]["train_loss"] is not None
    saved = json.loads((out / "train_config.json").read_text())
    assert saved["labels"] == ["negative", "neutral", "positive"] and Path(saved["data"]).is_absolute()


def test_frozen_encoder_trains_only_the_head(tiny_model_dir, tiny_data_dir, tmp_path):
    r = train(_cfg(tiny_model_dir, tiny_data_dir, tmp_path / "run", freeze="encoder", train_size=30))
    assert r.speed["trainable_params"] < r.speed["total_params"] / 5
    assert r.speed["train_rows"] == 30


def test_existing_output_is_refused_before_any_work(tiny_model_dir, tiny_data_dir, tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "keep.txt").write_text("x")
    with pytest.raises(UserError, match="already exists"):
        train(_cfg(tiny_model_dir, tiny_data_dir, tmp_path / "run"))
    assert os.listdir(tmp_path / "run") == ["keep.txt"]


def test_interrupted_run_leaves_no_output_and_resumes(tiny_model_dir, tiny_data_dir, tmp_path):
    class Kill(Exception):
        pass

    def die_at_epoch_2(row):
        if row["epoch"] >= 2:
            raise Kill

    cfg = _cfg(tiny_model_dir, tiny_data_dir, tmp_path / "run", epochs=2)
    with pytest.raises(Kill):
        train(cfg, on_epoch=die_at_epoch_2)
    assert not (tmp_path / "run").exists(), "an interrupted run leaves no run folder"
    assert list((tmp_path / "run.partial").glob("checkpoint-*"))
    rows = []
    r = train(_cfg(tiny_model_dir, tiny_data_dir, tmp_path / "run", epochs=2, resume=True), on_epoch=rows.append)
    assert (tmp_path / "run" / "model.safetensors").is_file()
    assert [e["epoch"] for e in r.history] == [1.0, 2.0], "the whole history, across the resume"
    assert [bool(e.get("from_checkpoint")) for e in rows] == [True, False], "resumed at epoch 2, epoch 1 not redone"
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert [e["epoch"] for e in metrics["epochs"]] == [1.0, 2.0] and metrics["speed"]["resumed_from"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"], "work folder removed after the final rename"


def test_resume_without_checkpoint_is_a_user_error(tiny_model_dir, tiny_data_dir, tmp_path):
    with pytest.raises(UserError, match="no complete checkpoint"):
        train(_cfg(tiny_model_dir, tiny_data_dir, tmp_path / "run", resume=True))


def test_unknown_preset_and_unreadable_model(tiny_data_dir, tmp_path):
    with pytest.raises(UserError, match="unknown model preset"):
        train(_cfg("bert-enormous", tiny_data_dir, tmp_path / "a"))
    bad = tmp_path / "bad_model"
    bad.mkdir()
    (bad / "config.json").write_text("{not json")
    with pytest.raises(UserError, match="cannot load model"):
        train(_cfg(bad, tiny_data_dir, tmp_path / "b"))
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_from_scratch_preset_with_packaged_vocab(tiny_data_dir, tmp_path):
    r = train(_cfg("bert-tiny", tiny_data_dir, tmp_path / "run", train_size=30))
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert cfg["num_hidden_layers"] == 2 and cfg["hidden_size"] == 128 and cfg["vocab_size"] == 30522
    assert r.final["n"] == 30


@pytest.mark.slow
def test_torchrun_two_processes(tiny_model_dir, tiny_data_dir, tmp_path):
    """DDP on CPU (gloo) through torchrun drives the same command: one model, one metrics file."""
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "bertdeploy.cli.__main__",
           "train", "--model", str(tiny_model_dir), "--data", str(tiny_data_dir), "--output", str(out),
           "--epochs", "1", "--batch-size", "8", "report_to=none"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (out / "model.safetensors").is_file() and (out / "metrics.json").is_file()
    assert not list(tmp_path.glob("run.*")), "no leftovers next to the run"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["final"]["n"] == 30


def test_overwrite_replaces_only_a_run_and_never_the_data(tiny_model_dir, tiny_data_dir, tmp_path):
    """Issue 14: `train --data victim --output victim --overwrite` deleted the dataset."""
    import shutil

    victim = tmp_path / "victim"
    shutil.copytree(tiny_data_dir, victim)
    before = sorted(p.name for p in victim.iterdir())
    with pytest.raises(UserError, match="is the input"):
        train(_cfg(tiny_model_dir, victim, victim, overwrite=True))
    with pytest.raises(UserError, match="lies inside the input"):
        train(_cfg(tiny_model_dir, victim, victim / "run"))
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="refusing to replace .* not a bertdeploy training run"):
        train(_cfg(tiny_model_dir, tiny_data_dir, notes, overwrite=True))
    assert sorted(p.name for p in victim.iterdir()) == before and (notes / "notes.txt").read_text() == "mine"
    partial = tmp_path / "other.partial"  # someone's folder where the work folder would go
    partial.mkdir()
    (partial / "keep.txt").write_text("x")
    with pytest.raises(UserError, match="not the work folder of an interrupted bertdeploy run"):
        train(_cfg(tiny_model_dir, tiny_data_dir, tmp_path / "other"))
    assert (partial / "keep.txt").exists()


def test_unseen_validation_labels_error_keep_drop(tiny_model_dir, tmp_path):
    """ATIS-like data: labels.txt lists a label that occurs in validation / test only."""
    from helpers import TINY_LABELS, tiny_texts, write_csv

    data = tmp_path / "data"
    write_csv(data / "train.csv", [r for r in tiny_texts(90, seed=1) if r[1] != "neutral"])
    write_csv(data / "validation.csv", tiny_texts(30, seed=2))
    write_csv(data / "test.csv", tiny_texts(30, seed=3))
    (data / "labels.txt").write_text("\n".join(TINY_LABELS) + "\n")
    with pytest.raises(UserError, match="never appear in training .*--unseen-labels keep .* or drop"):
        train(_cfg(tiny_model_dir, data, tmp_path / "a"))
    r = train(_cfg(tiny_model_dir, data, tmp_path / "drop", unseen_labels="drop", train_size=30))
    assert r.final["n"] == 20 and any("dropped 10 row(s)" in n for n in r.notes)
    r = train(_cfg(tiny_model_dir, data, tmp_path / "keep", unseen_labels="keep", train_size=30))
    assert r.final["n"] == 30 and r.labels == TINY_LABELS and any("kept 10 row(s)" in n for n in r.notes)
    assert not (tmp_path / "a").exists()
