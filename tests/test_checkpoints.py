"""The work folder of a run: which checkpoints can be resumed from, whose folder it is, and the epoch history
read back from a checkpoint's trainer state (no training here: the folders are made by hand)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bertdeploy.errors import UserError
from bertdeploy.training import checkpoints
from bertdeploy.training.callbacks import rows_from_log_history


def _checkpoint(work: Path, step: int, *, complete: bool = True, state_step: int | None = None) -> Path:
    c = work / f"checkpoint-{step}"
    c.mkdir(parents=True)
    (c / "config.json").write_text("{}")
    (c / "model.safetensors").write_bytes(b"x")
    if complete:
        for name in ("optimizer.pt", "scheduler.pt"):
            (c / name).write_bytes(b"x")
        (c / "trainer_state.json").write_text(json.dumps({"global_step": step if state_step is None else state_step}))
    return c


def test_the_newest_complete_checkpoint_is_taken_and_incomplete_ones_found(tmp_path):
    work = tmp_path / "run.partial"
    _checkpoint(work, 4)
    _checkpoint(work, 8)
    _checkpoint(work, 12, complete=False)  # killed while transformers wrote it: only config + weights
    truncated = _checkpoint(work, 16)
    (truncated / "trainer_state.json").write_text('{"global_step": 1')  # killed while writing the state
    _checkpoint(work, 20, state_step=3)  # a state that belongs elsewhere
    last, incomplete = checkpoints.find(work)
    assert last == str(work / "checkpoint-8")  # numeric order: 8 < 12 < 16 < 20 (not "12" < "4")
    assert incomplete == ["checkpoint-12", "checkpoint-16", "checkpoint-20"]
    assert "optimizer.pt" in checkpoints.incomplete_reason(work / "checkpoint-12")
    checkpoints.claim(work, incomplete)
    assert sorted(p.name for p in work.iterdir()) == [checkpoints.MARKER, "checkpoint-4", "checkpoint-8"]
    assert checkpoints.find(tmp_path / "absent") == (None, [])


def test_only_our_work_folder_is_ever_deleted(tmp_path):
    theirs = tmp_path / "x.partial"
    theirs.mkdir()
    (theirs / "thesis.tex").write_text("years of work")
    with pytest.raises(UserError, match="not the work folder of an interrupted bertdeploy run"):
        checkpoints.discard(theirs)
    with pytest.raises(UserError, match="not the work folder"):
        checkpoints.find(theirs)
    assert (theirs / "thesis.tex").exists()
    old = tmp_path / "y.partial"  # the work folder of a run from before the marker: checkpoints and logs only
    _checkpoint(old, 4)
    (old / "logs").mkdir()
    assert checkpoints.is_ours(old)
    checkpoints.discard(old)
    assert not old.exists()
    only_logs = tmp_path / "z.partial"
    (only_logs / "logs").mkdir(parents=True)
    assert not checkpoints.is_ours(only_logs)


def test_the_epoch_history_is_read_back_from_the_trainer_state():
    log = [
        {"loss": 1.0, "learning_rate": 1e-3, "epoch": 0.5, "step": 2},
        {"loss": 0.8, "learning_rate": 9e-4, "epoch": 1.0, "step": 4},
        {"eval_loss": 0.7, "eval_accuracy": 0.5, "eval_f1_macro": 0.4, "epoch": 1.0, "step": 4},
        {"loss": 0.6, "learning_rate": 5e-4, "epoch": 2.0, "step": 8},
        {"eval_loss": 0.5, "eval_accuracy": 0.75, "epoch": 2.0, "step": 8},
        {"train_runtime": 3.0, "epoch": 2.0, "step": 8},
    ]
    rows = rows_from_log_history(log)
    assert [(r["epoch"], r["step"]) for r in rows] == [(1.0, 4), (2.0, 8)]
    assert rows[0]["train_loss"] == pytest.approx(0.9) and rows[1]["train_loss"] == pytest.approx(0.6)
    assert rows[0]["loss"] == 0.7 and rows[0]["accuracy"] == 0.5 and rows[1]["learning_rate"] == 5e-4
    assert all(r["from_checkpoint"] for r in rows)
