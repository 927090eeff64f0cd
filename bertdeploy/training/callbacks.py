"""What training reports while it runs: a Trainer callback that collects one row per epoch (train loss,
validation loss and scores), a quiet progress bar, progress lines for a log, and the loss/score curves PNG."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from transformers import TrainerCallback
from transformers.trainer_callback import ProgressCallback

EpochHook = Callable[[dict[str, Any]], None]
#: seconds of training between two progress lines (:class:`StepProgress`)
PROGRESS_EVERY_S = 120.0


def epoch_row(logs: dict[str, Any], step: int, losses: list[float], lr: float | None) -> dict[str, Any]:
    """One history row from an evaluation's logs, the training losses logged since the previous one and the
    learning rate last logged."""
    return {
        "epoch": round(float(logs.get("epoch") or 0), 2),
        "step": step,
        "train_loss": sum(losses) / len(losses) if losses else None,
        **{k.removeprefix("eval_"): v for k, v in logs.items() if k.startswith("eval_")},
        "learning_rate": lr,
    }


def rows_from_log_history(log_history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The history rows of the epochs a checkpoint's ``trainer_state.json`` remembers (``from_checkpoint``)."""
    rows, losses, lr = [], [], None
    for entry in log_history:
        if "learning_rate" in entry:
            lr = float(entry["learning_rate"])
        if "loss" in entry:
            losses.append(float(entry["loss"]))
        if "eval_loss" in entry:
            rows.append({**epoch_row(entry, int(entry.get("step", 0)), losses, lr), "from_checkpoint": True})
            losses = []
    return rows


class EpochRecorder(TrainerCallback):
    """Collects ``history`` rows: epoch, train_loss (mean of the losses logged that epoch), eval_* scores.

    On a resumed run the epochs before the checkpoint are read back from its trainer state (marked
    ``from_checkpoint``), so the history is always the whole run's."""

    def __init__(self, on_epoch: EpochHook | None = None) -> None:
        self.history: list[dict[str, Any]] = []
        self._losses: list[float] = []
        self._on_epoch = on_epoch

    def on_train_begin(self, args, state, control, **kwargs):  # noqa: D401 - Trainer hook
        if state.log_history and not self.history and state.is_world_process_zero:
            self.history = rows_from_log_history(state.log_history)
            for row in self.history:
                if self._on_epoch:
                    self._on_epoch(row)

    def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: D401 - Trainer hook
        logs = logs or {}
        if "loss" in logs:
            self._losses.append(float(logs["loss"]))
        if "eval_loss" in logs and state.is_world_process_zero:
            logs = {**logs, "epoch": logs.get("epoch", state.epoch or 0)}
            row = epoch_row(logs, state.global_step, self._losses, self._last_lr(state))
            self._losses = []
            self.history.append(row)
            if self._on_epoch:
                self._on_epoch(row)

    @staticmethod
    def _last_lr(state) -> float | None:
        for entry in reversed(state.log_history):
            if "learning_rate" in entry:
                return float(entry["learning_rate"])
        return None


class QuietProgress(ProgressCallback):
    """Trainer's tqdm bar without the raw log dicts (the epoch table shows them)."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        return None


class StepProgress(TrainerCallback):
    """A line on the :data:`bertdeploy.progress.LINES` logger every ``every_s`` seconds of training: step, epoch,
    the loss last logged, seconds a step and the time to go at the pace so far (evaluations included), so a log
    (``nohup``, CI: no bar draws there) shows a long epoch is alive. The numbers ride on the record as
    ``record.progress``."""

    def __init__(self, every_s: float | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        from bertdeploy.progress import LINES

        self._log = logging.getLogger(LINES)
        self._every, self._clock = PROGRESS_EVERY_S if every_s is None else every_s, clock
        self._start = self._last = 0.0
        self._first = 0

    def on_train_begin(self, args, state, control, **kwargs):  # noqa: D401 - Trainer hook
        self._start = self._last = self._clock()
        self._first = state.global_step  # a resumed run: its pace is this process's steps

    def on_step_end(self, args, state, control, **kwargs):  # noqa: D401 - Trainer hook
        now = self._clock()
        if now - self._last < self._every or not state.is_world_process_zero:
            return
        self._last = now
        per = (now - self._start) / max(state.global_step - self._first, 1)
        loss = next((float(e["loss"]) for e in reversed(state.log_history) if "loss" in e), None)
        info = {"step": state.global_step, "max_steps": state.max_steps, "epoch": float(state.epoch or 0),
                "epochs": float(args.num_train_epochs), "loss": loss, "seconds_per_step": per,
                "remaining_s": per * max(state.max_steps - state.global_step, 0)}  # fmt: skip
        self._log.info(progress_line(info), extra={"progress": info})


def progress_line(info: dict[str, Any]) -> str:
    """``step 450/2,134 · epoch 0.42 of 2 · loss 3.9100 · 1.90 s a step · about 53 min to go``."""
    loss = "" if info["loss"] is None else f" · loss {info['loss']:.4f}"
    left = info["remaining_s"]
    to_go = f"{left / 3600:.1f} h" if left >= 5400 else f"{max(1, round(left / 60))} min"
    return (f"step {info['step']:,}/{info['max_steps']:,} · epoch {info['epoch']:.2f} of {info['epochs']:g}{loss} · "
            f"{info['seconds_per_step']:.2f} s a step · about {to_go} to go")  # fmt: skip


def plot_curves(history: list[dict[str, Any]], path: Path, title: str) -> None:
    """Loss (train, validation) and validation accuracy / macro-F1 per epoch (matplotlib's object API: no
    pyplot, no backend switch)."""
    from matplotlib.figure import Figure

    epochs = [r["epoch"] for r in history]
    fig = Figure(figsize=(10, 4))
    ax1, ax2 = fig.subplots(1, 2)
    if any(r.get("train_loss") is not None for r in history):
        ax1.plot(epochs, [r.get("train_loss") for r in history], "o-", label="train loss")
    ax1.plot(epochs, [r.get("loss") for r in history], "o-", label="validation loss")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("loss")
    ax1.legend()
    for key in ("accuracy", "f1_macro"):
        ax2.plot(epochs, [r.get(key) for r in history], "o-", label=f"validation {key}")
    ax2.set_xlabel("epoch")
    ax2.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
