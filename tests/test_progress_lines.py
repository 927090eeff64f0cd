"""Progress lines where no bar draws (a log): training's :class:`StepProgress` on the ``bertdeploy.progress``
logger, shown by the command line exactly when the bars are off in normal mode."""

from __future__ import annotations

import io
import logging
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from bertdeploy import progress
from bertdeploy.training import callbacks
from bertdeploy.training.callbacks import StepProgress, progress_line


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _state(step: int, history: list[dict] | None = None, first: bool = True) -> SimpleNamespace:
    return SimpleNamespace(global_step=step, max_steps=100, epoch=step / 50, log_history=history or [],
                           is_world_process_zero=first)  # fmt: skip


def _started(caplog, every_s: float, epochs: float, first_step: int):
    """A StepProgress on a fake clock, begun at ``first_step``, its lines captured."""
    clock = _Clock()
    cb = StepProgress(every_s=every_s, clock=clock)
    args = SimpleNamespace(num_train_epochs=epochs)
    caplog.set_level(logging.INFO, logger=progress.LINES)
    cb.on_train_begin(args, _state(first_step), None)
    return clock, cb, args


def test_a_line_every_interval_with_the_pace_and_time_to_go(caplog):
    clock, cb, args = _started(caplog, every_s=60, epochs=2.0, first_step=0)
    for step in range(1, 41):  # 2 s a step: a line at steps 30 (60 s) and none after, before 120 s
        clock.now += 2.0
        cb.on_step_end(args, _state(step, [{"loss": 5.0}, {"eval_loss": 4.0}, {"loss": 3.25}]), None)
    records = [r for r in caplog.records if r.name == progress.LINES]
    assert len(records) == 1
    info = records[0].progress
    assert info["step"] == 30 and info["max_steps"] == 100 and info["loss"] == 3.25  # the loss last logged
    assert info["seconds_per_step"] == pytest.approx(2.0) and info["remaining_s"] == pytest.approx(140.0)
    assert records[0].getMessage() == "step 30/100 · epoch 0.60 of 2 · loss 3.2500 · 2.00 s a step · about 2 min to go"


def test_a_resumed_run_paces_its_own_steps_and_other_ranks_stay_silent(caplog):
    clock, cb, args = _started(caplog, every_s=10, epochs=1, first_step=50)
    clock.now += 20.0
    cb.on_step_end(args, _state(60, first=False), None)
    assert not caplog.records
    cb.on_step_end(args, _state(60), None)
    (record,) = caplog.records
    assert record.progress["seconds_per_step"] == pytest.approx(2.0) and record.progress["loss"] is None
    assert "loss" not in record.getMessage() and "about 1 min to go" in record.getMessage()


def test_time_to_go_reads_in_hours_when_long():
    info = {"step": 1, "max_steps": 10_000, "epoch": 0.0, "epochs": 3, "loss": None, "seconds_per_step": 2.0,
            "remaining_s": 19_998.0}  # fmt: skip
    assert progress_line(info).endswith("2.00 s a step · about 5.6 h to go")
    assert progress_line(info).startswith("step 1/10,000 · epoch 0.00 of 3 ·")


def test_lines_reach_the_stream_only_when_shown_and_the_logger_is_restored():
    logger = logging.getLogger(progress.LINES)
    before = (logger.level, logger.propagate, list(logger.handlers))
    out = io.StringIO()
    with progress.lines(out, show=False):
        logger.info("hidden")
    with progress.lines(out):
        logger.info("step 1/2")
    logger.info("after")
    assert out.getvalue() == "step 1/2\n"
    assert (logger.level, logger.propagate, list(logger.handlers)) == before


def test_train_in_a_log_prints_progress_lines(tiny_model_dir, tiny_data_dir, tmp_path, monkeypatch):
    from bertdeploy.cli import cli

    for name in progress.BAR_SWITCHES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(callbacks, "PROGRESS_EVERY_S", 0.0)  # a line after every step
    args = ["train", "--model", str(tiny_model_dir), "--data", str(tiny_data_dir), "--output", str(tmp_path / "run"),
            "--epochs", "1", "--max-length", "32", "report_to=none"]  # fmt: skip
    r = CliRunner().invoke(cli, args)  # CliRunner's stderr is no terminal: no bars, so lines
    assert r.exit_code == 0, r.output
    lines = [line for line in r.output.splitlines() if line.startswith("step ")]
    assert lines and " · epoch " in lines[-1] and "s a step · about" in lines[-1], r.output[-3000:]
    steps = [int(line.split()[1].split("/")[0]) for line in lines]
    assert steps == sorted(steps) and steps[0] >= 1
    r = CliRunner().invoke(cli, [*args, "--overwrite", "--quiet"])
    assert r.exit_code == 0 and "step " not in r.output
