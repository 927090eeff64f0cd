"""bertdeploy/outputs.py: ownership before replacement, outputs never overlapping inputs, PID-tagged temporary
names and the sweeping of stale ones, symlinked outputs, disk errors as one line."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bertdeploy import bundle, outputs
from bertdeploy.errors import UserError
from bertdeploy.outputs import (
    KINDS,
    atomic_dir,
    atomic_file,
    check_inputs,
    check_output_dir,
    kind_of,
    scratch_dir,
    sweep_scratch,
    sweep_siblings,
)


def _dead_pid() -> int:
    """The PID of a process that has exited (and been reaped)."""
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(proc.stdout)


def _folder(path: Path, kind: str | None, extra: str = "notes.txt") -> Path:
    path.mkdir(parents=True)
    (path / extra).write_text("mine", encoding="utf-8")
    if kind == "bundle":
        (path / "bertdeploy.json").write_text(json.dumps({"format": "bertdeploy-bundle"}), encoding="utf-8")
    elif kind == "run":
        (path / "train_config.json").write_text(json.dumps({"labels": ["a"], "model_info": {}}), encoding="utf-8")
    elif kind == "bench":
        (path / "results.json").write_text(json.dumps({"schema": "bertdeploy-bench/1"}), encoding="utf-8")
    elif kind == "cloze":
        (path / "cloze.json").write_text(json.dumps({"format": "bertdeploy-cloze/1"}), encoding="utf-8")
    return path


def test_the_kinds_agree_with_the_writers():
    from bertdeploy.benchmark.results import SCHEMA
    from bertdeploy.data.cloze import FORMAT

    assert KINDS["bundle"].marker == bundle.MANIFEST_NAME and KINDS["bundle"].prefix == bundle.FORMAT
    assert SCHEMA.startswith(KINDS["bench"].prefix)
    assert FORMAT.startswith(KINDS["cloze"].prefix)


@pytest.mark.parametrize("kind", ["bundle", "run", "bench", "cloze"])
def test_only_an_output_of_the_same_kind_is_replaced(tmp_path, kind):
    for other in ("bundle", "run", "bench", "cloze", None):
        folder = _folder(tmp_path / f"{kind}-{other}", other)
        assert kind_of(folder) == other
        if other == kind:
            assert check_output_dir(folder, True, kind=kind) == folder
            with atomic_dir(folder, overwrite=True, kind=kind) as tmp:
                (tmp / "new.txt").write_text("new", encoding="utf-8")
            assert [p.name for p in folder.iterdir()] == ["new.txt"]
        else:
            with pytest.raises(UserError, match=f"refusing to replace .*not a {KINDS[kind].label}"):
                check_output_dir(folder, True, kind=kind)
            with pytest.raises(UserError, match="refusing to replace"), atomic_dir(folder, True, kind=kind):
                pytest.fail("the block must not run")
            assert (folder / "notes.txt").read_text(encoding="utf-8") == "mine"
        with pytest.raises(UserError, match="already exists and is not empty"):
            check_output_dir(folder, False, kind=kind)


def test_a_marker_that_is_not_ours_does_not_count(tmp_path):
    folder = tmp_path / "f"
    folder.mkdir()
    (folder / "bertdeploy.json").write_text('{"format": "something-else"}', encoding="utf-8")
    assert kind_of(folder) is None
    (folder / "bertdeploy.json").write_text("not json", encoding="utf-8")
    assert kind_of(folder) is None
    (folder / "results.json").write_text('["bertdeploy-bench/1"]', encoding="utf-8")
    assert kind_of(folder) is None
    empty = tmp_path / "empty"
    empty.mkdir()
    assert check_output_dir(empty, False, kind="bundle") == empty  # an empty folder is free


def test_an_output_never_is_contains_or_lies_inside_an_input(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (tmp_path / "link").symlink_to(data)
    for out, relation in [(data, "is"), (data / "run", "lies inside"), (tmp_path, "contains"),
                          (tmp_path / "link", "is"), (tmp_path / "link" / "x", "lies inside")]:  # fmt: skip
        with pytest.raises(UserError, match=f"{relation} the input"):
            check_inputs(out, [data])
        with pytest.raises(UserError, match=f"{relation} the input"):
            check_output_dir(out, True, inputs=["hub/id-not-a-path", None, "-", data])
    check_inputs(tmp_path / "elsewhere", [data, "bert-base-uncased", None])  # no overlap, no error
    check_inputs(tmp_path / "data2", [data])  # a common name prefix is not containment


def test_temporary_names_carry_the_pid_and_stale_ones_are_swept(tmp_path):
    target = tmp_path / "out"
    dead, alive = _dead_pid(), os.getpid()
    stale_dir = tmp_path / f".out.bertdeploy-{dead}.abc123.tmp"
    stale_dir.mkdir()
    (stale_dir / "big.bin").write_bytes(b"x" * 10)
    stale_file = tmp_path / f".out.bertdeploy-{dead}.zz.tmp"
    stale_file.write_text("x", encoding="utf-8")
    live = tmp_path / f".out.bertdeploy-{alive}.live.tmp"
    live.mkdir()
    other = tmp_path / f".out2.bertdeploy-{dead}.x.tmp"  # another output's leftover: not ours to judge here
    other.mkdir()
    seen = []
    with atomic_dir(target) as tmp:
        seen.append(tmp.name)
        assert tmp.name.startswith(f".out.bertdeploy-{alive}.") and tmp.name.endswith(".tmp")
    assert not stale_dir.exists() and not stale_file.exists()
    assert live.exists() and other.exists() and target.is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["out", live.name, other.name])


def test_a_folder_parked_by_a_killed_swap_is_put_back(tmp_path):
    """A kill between the two renames of atomic_dir leaves the old folder parked and NAME missing."""
    dead = _dead_pid()
    target = tmp_path / "b"
    parked = _folder(tmp_path / f".b.bertdeploy-{dead}.old", "bundle")
    assert sweep_siblings(target) == [parked.name]
    assert (target / "notes.txt").read_text(encoding="utf-8") == "mine" and not parked.exists()
    parked = _folder(tmp_path / f".b.old-{dead}", "bundle", extra="older.txt")  # the name before 0.2
    sweep_siblings(target)  # NAME exists now: the parked copy is the stale one
    assert not parked.exists() and (target / "notes.txt").exists()


def test_scratch_folders_are_swept_when_their_process_is_gone(tmp_path, monkeypatch):
    monkeypatch.setattr(outputs.tempfile, "tempdir", str(tmp_path))
    dead = _dead_pid()
    stale = tmp_path / f"bertdeploy-export-{dead}-abcd1234"
    stale.mkdir()
    unrelated = tmp_path / "bertdeploy-export-oldstyle1"  # no PID: never ours to remove
    unrelated.mkdir()
    with scratch_dir("export") as tmp:
        assert tmp.name.startswith(f"bertdeploy-export-{os.getpid()}-")
        assert sweep_scratch("export") == []  # our own live folder is kept
    assert not stale.exists() and unrelated.exists() and not tmp.exists()


def test_a_symlinked_output_keeps_its_link(tmp_path):
    real = tmp_path / "real.jsonl"
    real.write_text("old\n", encoding="utf-8")
    link = tmp_path / "link.jsonl"
    link.symlink_to(real)
    with atomic_file(link) as tmp:
        tmp.write_text("new\n", encoding="utf-8")
    assert link.is_symlink() and real.read_text(encoding="utf-8") == "new\n"
    real_dir = _folder(tmp_path / "real_bundle", "bundle")
    link_dir = tmp_path / "bundle_link"
    link_dir.symlink_to(real_dir)
    with atomic_dir(link_dir, overwrite=True, kind="bundle") as tmp:
        (tmp / "bertdeploy.json").write_text('{"format": "bertdeploy-bundle"}', encoding="utf-8")
    assert link_dir.is_symlink() and sorted(p.name for p in real_dir.iterdir()) == ["bertdeploy.json"]


def test_written_outputs_get_the_usual_modes(tmp_path):
    mask = os.umask(0o022)
    try:
        with atomic_dir(tmp_path / "d") as tmp:
            (tmp / "f").write_text("x", encoding="utf-8")
        with atomic_file(tmp_path / "g") as tmp:
            tmp.write_text("x", encoding="utf-8")
    finally:
        os.umask(mask)
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "d" / "f").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "g").stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT, errno.EROFS])
def test_a_full_disk_is_one_line_and_leaves_nothing(tmp_path, code):
    def full(*a, **k):
        raise OSError(code, os.strerror(code))

    with (
        pytest.raises(UserError, match=f"cannot write .*out.jsonl: {os.strerror(code)}"),
        atomic_file(tmp_path / "out.jsonl"),
    ):
        full()
    with pytest.raises(UserError, match="cannot write"), atomic_dir(tmp_path / "d"):
        full()
    with pytest.raises(OSError, match="Permission"), atomic_file(tmp_path / "x"):  # not a disk error: unchanged
        raise PermissionError(errno.EACCES, "Permission denied")
    assert list(tmp_path.iterdir()) == []


def test_relative_paths_names_files_as_the_checkout_has_them(tmp_path):
    from bertdeploy.outputs import relative_paths

    root = tmp_path.resolve()
    data = {"file": str(root / "models" / "m" / "model.onnx"), "rows": [str(root), "/elsewhere/x", 3],
            "nested": {"bundle": str(root / "b")}, "sibling": str(root) + "-other/f"}  # fmt: skip
    assert relative_paths(data, root) == {"file": "models/m/model.onnx", "rows": [".", "/elsewhere/x", 3],
                                          "nested": {"bundle": "b"}, "sibling": str(root) + "-other/f"}  # fmt: skip
