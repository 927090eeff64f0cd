"""Fault tests (slow): train / export / predict killed with SIGKILL or SIGTERM at chosen points
(``tests/fault_driver.py`` makes the process signal itself there, so the point is exact, not timed), then run
again. What must hold: nothing half-written at the output path; after SIGTERM nothing is left at all; ``--resume``
finishes with the whole epoch history; the next run sweeps the leftovers of the killed one. And a full disk (a
real 200 kB tmpfs, where the machine lets us mount one) is one error line."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO

pytestmark = pytest.mark.slow
DRIVER = Path(__file__).parent / "fault_driver.py"


def _env(tmp: Path) -> dict[str, str]:
    env = {**os.environ, "TMPDIR": str(tmp), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(Path(__file__).parent), env.get("PYTHONPATH", "")])
    tmp.mkdir(exist_ok=True)
    return env


def _run(tmp_path: Path, args: list, point: str | None = None, sig: str = "KILL") -> subprocess.CompletedProcess:
    args = [str(a) for a in args]
    if point is None:
        cmd = [sys.executable, "-m", "bertdeploy.cli.__main__", *args]
    else:
        cmd = [sys.executable, str(DRIVER), point, sig, "--", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=_env(tmp_path / "tmp"))


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def _ours(tmp: Path) -> list[str]:
    """bertdeploy's scratch folders in the temp dir (other libraries leave their own files there)."""
    return [n for n in _names(tmp) if n.startswith("bertdeploy-")]


def _killed(proc: subprocess.CompletedProcess, sig: str) -> None:
    expected = -signal.SIGKILL if sig == "KILL" else 143
    assert proc.returncode == expected, (proc.returncode, proc.stderr[-3000:])
    if sig == "TERM":
        assert "Traceback" not in proc.stderr and proc.stderr.strip().endswith("terminated"), proc.stderr[-3000:]


def _train_args(model, data, out, epochs: int) -> list:
    return ["train", "--model", model, "--data", data, "-o", out, "--epochs", epochs, "--batch-size", 16,
            "--lr", "1e-3", "--max-length", 32, "report_to=none", "logging_steps=2"]  # fmt: skip


def _epochs(run: Path) -> list[tuple[float, bool]]:
    metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    return [(e["epoch"], bool(e.get("from_checkpoint"))) for e in metrics["epochs"]]


def test_train_killed_while_writing_a_checkpoint_resumes_with_the_whole_history(tmp_path, tiny_model_dir,
                                                                               tiny_data_dir):  # fmt: skip
    out = tmp_path / "run"
    args = _train_args(tiny_model_dir, tiny_data_dir, out, 3)
    _killed(_run(tmp_path, args, "train-checkpoint"), "KILL")
    assert not out.exists(), "no run folder after a kill"
    work = tmp_path / "run.partial"
    half = [p for p in work.glob("checkpoint-*") if not (p / "trainer_state.json").exists()]
    assert len(half) == 1 and (half[0] / "config.json").is_file(), "killed while the checkpoint was written"
    r = _run(tmp_path, [*args, "--resume"])
    assert r.returncode == 0, r.stderr[-3000:]
    assert _epochs(out) == [(1.0, True), (2.0, False), (3.0, False)]
    assert (out / "curves.png").is_file() and _names(tmp_path) == ["run", "tmp"]
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["speed"]["resumed_from"] == "checkpoint-8" and ".partial" not in json.dumps(metrics)
    assert json.loads((out / "train_config.json").read_text(encoding="utf-8"))["output"] == str(out.resolve())


def test_train_killed_between_epochs_and_during_the_final_write(tmp_path, tiny_model_dir, tiny_data_dir):
    out = tmp_path / "run"
    args = _train_args(tiny_model_dir, tiny_data_dir, out, 2)
    _killed(_run(tmp_path, args, "train-epoch"), "KILL")  # epoch 2 evaluated, its checkpoint not written
    assert not out.exists() and _names(tmp_path / "run.partial") == [".bertdeploy-partial", "checkpoint-8"]
    _killed(_run(tmp_path, [*args, "--resume"], "train-final"), "KILL")  # all epochs done, run folder half-written
    assert not out.exists()
    assert [n for n in _names(tmp_path) if n.startswith(".run.bertdeploy-")], "the half-written run is a temp sibling"
    r = _run(tmp_path, [*args, "--resume"])  # nothing left to train: the history comes from the checkpoint
    assert r.returncode == 0, r.stderr[-3000:]
    assert _epochs(out) == [(1.0, True), (2.0, True)] and (out / "curves.png").is_file()
    assert _names(tmp_path) == ["run", "tmp"], "the killed run's temporary sibling was swept"


def test_train_sigterm_leaves_only_the_resumable_work_folder(tmp_path, tiny_model_dir, tiny_data_dir):
    out = tmp_path / "run"
    args = _train_args(tiny_model_dir, tiny_data_dir, out, 2)
    _killed(_run(tmp_path, args, "train-final", "TERM"), "TERM")
    assert _names(tmp_path) == ["run.partial", "tmp"], "SIGTERM cleans up like Ctrl-C"


@pytest.mark.parametrize("point, sig", [("export-build", "KILL"), ("export-manifest", "KILL"),
                                        ("export-build", "TERM")])  # fmt: skip
def test_export_killed(tmp_path, tiny_model_dir, tiny_data_dir, point, sig):
    out = tmp_path / "bundle"
    args = ["export", tiny_model_dir, "-o", out, "--data", tiny_data_dir, "--int8", "max_accuracy_drop=100",
            "min_agreement={fp32: 0}"]  # fmt: skip
    _killed(_run(tmp_path, args, point, sig), sig)
    assert not out.exists()
    scratch = _ours(tmp_path / "tmp")
    if sig == "TERM":
        assert _names(tmp_path) == ["tmp"] and scratch == [], "SIGTERM removes the temp bundle and the scratch"
        return
    assert [n for n in _names(tmp_path) if n.startswith(".bundle.bertdeploy-")]
    assert [n for n in scratch if n.startswith("bertdeploy-export-")], "the killed export's scratch folder"
    r = _run(tmp_path, args)
    assert r.returncode == 0, r.stderr[-3000:]
    assert _names(tmp_path) == ["bundle", "tmp"] and _ours(tmp_path / "tmp") == [], "leftovers swept"
    assert (out / "bertdeploy.json").is_file()


@pytest.mark.parametrize("sig", ["KILL", "TERM"])
def test_predict_killed_midway(tmp_path, tiny_bundle, sig):
    src = tmp_path / "in.csv"
    with open(src, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text"])
        w.writerows([f"text {i} good bad"] for i in range(50))
    out = tmp_path / "preds.jsonl"
    out.write_text("the previous predictions\n", encoding="utf-8")
    args = ["predict", tiny_bundle, "-i", src, "-o", out, "--chunk-size", 10, "-q"]
    _killed(_run(tmp_path, args, "predict-write", sig), sig)
    assert out.read_text(encoding="utf-8") == "the previous predictions\n", "the old output is untouched"
    left = [n for n in _names(tmp_path) if n.startswith(".preds.jsonl.bertdeploy-")]
    assert bool(left) == (sig == "KILL")
    r = _run(tmp_path, args)
    assert r.returncode == 0, r.stderr[-3000:]
    assert len(out.read_text(encoding="utf-8").splitlines()) == 50
    assert _names(tmp_path) == ["in.csv", "preds.jsonl", "tmp"]


def small_disk(tmp_path: Path, size: str):
    """A tmpfs of ``size`` at ``tmp_path/full`` (root only; skips the test where mounting is not allowed)."""
    mnt = tmp_path / "full"
    mnt.mkdir()
    if subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)], capture_output=True
    ).returncode:
        pytest.skip("cannot mount a small tmpfs here")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


@pytest.fixture
def full_disk(tmp_path):
    """A 200 kB tmpfs."""
    yield from small_disk(tmp_path, "200k")


def test_a_full_disk_is_one_error_line(tmp_path, full_disk, tiny_bundle, tiny_model_dir, tiny_data_dir):
    src = tmp_path / "in.csv"
    src.write_text("text\n" + "".join(f"text number {i} good\n" for i in range(20000)), encoding="utf-8")
    r = _run(tmp_path, ["predict", tiny_bundle, "-i", src, "-o", full_disk / "p.jsonl", "-q"])
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1].endswith("No space left on device"), r.stderr
    assert _names(full_disk) == []
    r = _run(tmp_path, _train_args(tiny_model_dir, tiny_data_dir, full_disk / "run", 1))
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-3000:]
    errors = [line.partition("error: ")[2] for line in r.stderr.splitlines() if "error: " in line]  # after tqdm's \r
    assert len(errors) == 1 and errors[0].endswith("No space left on device"), r.stderr[-3000:]
    assert not (full_disk / "run").exists()
