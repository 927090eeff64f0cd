"""Fault tests of ``bertdeploy package`` (issue 25, slow): killed at exact points by ``tests/fault_driver.py``, a
Triton repository never loses a model folder and a wheel build leaves nothing that the next run does not sweep."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
import test_faults as faults

from bertdeploy.package import triton_repository

pytestmark = pytest.mark.slow


def _temp_leftovers(tmp: Path) -> list[str]:
    """Ours and pip's in the temp dir (onnxruntime 1.31 leaves a ``.ses`` file there on import)."""
    return [n for n in faults._names(tmp) if n.startswith(("bertdeploy-", "pip-", "tmp"))]


def _driver(tmp_path: Path, point: str, args: list) -> subprocess.CompletedProcess:
    """The driver in a session of its own, so that a kill of its process group reaches its children only."""
    cmd = [sys.executable, str(faults.DRIVER), point, "KILL", "--", *map(str, args)]
    env = faults._env(tmp_path / "tmp")
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, start_new_session=True)


def test_triton_overwrite_killed_between_the_renames_keeps_the_old_model(tmp_path, tiny_bundle):
    repo = tmp_path / "repo"
    triton_repository(tiny_bundle, repo, name="m", variant="fp32", kind="cpu", max_batch_size=8)
    (repo / "other").mkdir()  # someone else's model
    old_config = (repo / "m" / "config.pbtxt").read_text(encoding="utf-8")
    args = ["package", "triton", tiny_bundle, "-o", repo, "--name", "m", "--variant", "fp32", "--kind", "cpu"]
    faults._killed(_driver(tmp_path, "package-triton-swap", [*args, "--overwrite"]), "KILL")
    assert not (repo / "m").exists(), "killed after parking m, before renaming the new one in"
    parked = [n for n in faults._names(repo) if n.startswith(".m.bertdeploy-") and n.endswith(".old")]
    assert len(parked) == 1 and (repo / parked[0] / "config.pbtxt").read_text(encoding="utf-8") == old_config
    assert [n for n in faults._names(tmp_path) if n.startswith(".repo.bertdeploy-")], "the killed run's stage"

    again = faults._run(tmp_path, args)  # without --overwrite: the old m is put back, then it is in the way
    assert again.returncode == 2 and "already holds m, m_tokenizer, m_ensemble" in again.stderr, again.stderr
    assert (repo / "m" / "config.pbtxt").read_text(encoding="utf-8") == old_config
    r = faults._run(tmp_path, [*args, "--max-batch-size", "4", "--overwrite"])
    assert r.returncode == 0, r.stderr[-3000:]
    assert faults._names(repo) == ["m", "m_ensemble", "m_tokenizer", "other"]
    assert "max_batch_size: 4" in (repo / "m" / "config.pbtxt").read_text(encoding="utf-8")
    assert faults._names(tmp_path) == ["repo", "tmp"], "the killed run's stage was swept"


def test_wheel_killed_while_pip_runs_leaves_nothing_the_next_build_does_not_sweep(tmp_path, tiny_bundle):
    dist = tmp_path / "dist"
    args = ["package", "wheel", tiny_bundle, "--name", "tiny-model", "-o", dist]
    proc = _driver(tmp_path, "package-wheel-pip", args)
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, proc.stderr[-3000:])
    left = faults._names(dist)
    assert len(left) == 1 and left[0].startswith(".tiny_model.bertdeploy-") and left[0].endswith(".tmp"), left
    assert [p.name for p in (dist / left[0] / "tmp").iterdir() if p.name.startswith("pip-")], "pip's temp folders"
    assert _temp_leftovers(tmp_path / "tmp") == [], "pip wrote nothing to $TMPDIR"
    r = faults._run(tmp_path, args)
    assert r.returncode == 0, r.stderr[-3000:]
    assert faults._names(dist) == ["tiny_model-1.0.0-py3-none-any.whl"], "the killed build's folder was swept"
    assert _temp_leftovers(tmp_path / "tmp") == []


@pytest.fixture
def full_disk(tmp_path):
    """A 64 kB tmpfs: smaller than the tiny bundle's fp32 model."""
    yield from faults.small_disk(tmp_path, "64k")


def _one_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, proc.stderr[-3000:]
    return errors[0]


def test_package_on_a_full_disk_names_the_output(tmp_path, full_disk, tiny_bundle):
    """Each is one line naming the output and the disk: not the source bundle (a copy's ENOSPC names its source
    first), not pip's "Failed building wheel"."""
    triton = _one_error(faults._run(tmp_path, ["package", "triton", tiny_bundle, "-o", full_disk / "repo",
                                               "--variant", "fp32", "--kind", "cpu"]))  # fmt: skip
    assert triton == f"error: cannot write {full_disk / 'repo'}: No space left on device", triton
    wheel = _one_error(faults._run(tmp_path, ["package", "wheel", tiny_bundle, "--name", "t", "-o", full_disk]))
    assert wheel == f"error: cannot write {full_disk}: No space left on device", wheel
    assert faults._names(full_disk) == [] and _temp_leftovers(tmp_path / "tmp") == []


def test_export_onto_a_full_disk_blames_the_output_not_the_scratch_folder(tmp_path, full_disk, tiny_model_dir,
                                                                          tiny_data_dir):  # fmt: skip
    out = full_disk / "bundle"
    args = ["export", tiny_model_dir, "-o", out, "--data", tiny_data_dir, "max_accuracy_drop=100",
            "min_agreement={fp32: 0}"]  # fmt: skip
    line = _one_error(faults._run(tmp_path, args))
    assert line == f"error: cannot write {out}: No space left on device", line
    assert faults._names(full_disk) == [] and faults._ours(tmp_path / "tmp") == []
