"""Output modes: progress bars only on a terminal, ``--quiet`` (errors only) and ``--json`` (one parsable object)
on every command, implemented once in ``bertdeploy/cli/output.py`` and ``bertdeploy/progress.py``."""

from __future__ import annotations

import dataclasses
import io
import json
import math
from pathlib import Path

import click
import numpy as np
import pytest
from click.testing import CliRunner

from bertdeploy import progress
from bertdeploy.cli import cli, output


@pytest.fixture
def clean_env(monkeypatch):
    """Every switch progress.configure may set, unset (and restored after the test)."""
    for name in (*progress.BAR_SWITCHES, *progress.QUIET_SWITCHES):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


class _Stream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self._tty = tty

    def isatty(self) -> bool:
        return self._tty


def _leaves(group: click.Group, prefix: tuple[str, ...] = ()):
    for name, cmd in group.commands.items():
        if isinstance(cmd, click.Group):
            yield from _leaves(cmd, (*prefix, name))
        else:
            yield (*prefix, name), cmd


def test_bars_follow_the_terminal(clean_env):
    clean_env.setattr("sys.stderr", _Stream(tty=True))
    assert progress.configure() is True
    assert progress.bars_enabled()
    clean_env.setattr("sys.stderr", _Stream(tty=False))
    assert progress.configure() is False
    assert not progress.bars_enabled()


def test_quiet_turns_bars_and_library_logs_off_even_on_a_terminal(clean_env):
    clean_env.setattr("sys.stderr", _Stream(tty=True))
    assert progress.configure(quiet=True) is False
    import os

    assert os.environ["TRANSFORMERS_VERBOSITY"] == "error"


def test_tqdm_writes_nothing_once_bars_are_off(clean_env):
    """tqdm reads TQDM_DISABLE when it is imported: the CLI configures before any command imports it."""
    import subprocess
    import sys

    script = (
        "import sys\nfrom bertdeploy import progress\nprogress.configure(bars={on})\nfrom tqdm import tqdm\n"
        "for _ in tqdm(range(3), file=sys.stdout): pass\n"
    )
    for on in (True, False):
        run = subprocess.run([sys.executable, "-c", script.format(on=on)], capture_output=True, text=True, check=True)
        assert ("it/s]" in run.stdout) is on, run.stdout


def test_datasets_map_draws_no_bar_once_bars_are_off(clean_env, capfd):
    datasets = pytest.importorskip("datasets")
    progress.configure(bars=False)
    ds = datasets.Dataset.from_dict({"x": list(range(5))})
    ds.map(lambda r: {"y": r["x"] + 1}, desc="tokenize")
    err = capfd.readouterr().err
    assert "%|" not in err and "examples/s" not in err
    datasets.enable_progress_bars()


def test_is_tty_of_odd_streams():
    assert progress.is_tty(_Stream(tty=True))
    assert not progress.is_tty(_Stream(tty=False))
    assert not progress.is_tty(object())  # type: ignore[arg-type]


@pytest.mark.parametrize("path, cmd", list(_leaves(cli)), ids=lambda x: " ".join(x) if isinstance(x, tuple) else "")
def test_every_command_has_both_modes(path, cmd):
    opts = {o for p in cmd.params for o in p.opts}
    assert {"--quiet", "--json"} <= opts, path


@dataclasses.dataclass
class _Result:
    path: Path
    score: np.float32
    ratio: float
    rows: list


def test_jsonable_turns_results_into_json_types():
    got = output.jsonable(_Result(Path("a/b"), np.float32(0.5), math.nan, [np.arange(2), {"k": (1, 2)}]))
    assert got == {"path": "a/b", "score": 0.5, "ratio": None, "rows": [[0, 1], {"k": [1, 2]}]}
    json.dumps(got, allow_nan=False)


def test_kept_lines_pass_only_errors_and_warnings():
    target = io.StringIO()
    kept = output._KeptLines(target)
    kept.write("loading ...\nwarn")
    kept.write("ing: one\n  0%|   | 0/2 [00:00<?, ?it/s]\nINFO:     ready\nERROR:    port in use\nerror: bad")
    kept.flush()
    assert target.getvalue() == "warning: one\nERROR:    port in use\nerror: bad\n"


def _texts(tmp_path: Path) -> Path:
    path = tmp_path / "texts.txt"
    path.write_text("i love it\nthis is awful\nok then\n")
    return path


def test_json_prints_one_object_with_the_result(tiny_bundle, tmp_path):
    out = tmp_path / "preds.jsonl"
    r = CliRunner().invoke(cli, ["predict", str(tiny_bundle), "-i", str(_texts(tmp_path)), "-o", str(out), "--json"])
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert len(lines) == 1, r.stdout
    obj = json.loads(lines[0])
    assert obj["command"] == "bertdeploy predict" and obj["ok"] is True
    assert obj["result"]["rows"] == 3 == len(out.read_text().splitlines())
    assert "predictions ->" not in r.stderr


def test_json_error_is_an_object_too(tmp_path):
    r = CliRunner().invoke(cli, ["predict", str(tmp_path / "nope"), "-i", "x.txt", "-o", "y.jsonl", "--json"])
    assert r.exit_code == 2
    obj = json.loads(r.stdout)
    assert obj["ok"] is False and obj["exit_code"] == 2 and obj["error"]
    assert r.stderr.startswith("error: ")


def test_json_usage_error_names_the_command():
    r = CliRunner().invoke(cli, ["package", "wheel", "somewhere", "--json"])
    assert r.exit_code == 2
    obj = json.loads(r.stdout)
    assert obj["command"] == "bertdeploy package wheel" and "--name" in obj["error"]


def test_json_refuses_data_on_stdout(tiny_bundle, tmp_path):
    r = CliRunner().invoke(cli, ["predict", str(tiny_bundle), "-i", str(_texts(tmp_path)), "-o", "-", "--json"])
    assert r.exit_code == 2
    assert "--json" in json.loads(r.stdout)["error"]


def test_quiet_prints_nothing_but_keeps_the_data(tiny_bundle, tmp_path):
    repo = tmp_path / "triton"
    r = CliRunner().invoke(cli, ["package", "triton", str(tiny_bundle), "-o", str(repo), "--quiet"])
    assert r.exit_code == 0, r.output
    assert r.stdout == "" and r.stderr == ""
    assert (repo / "bundle" / "config.pbtxt").is_file()
    r = CliRunner().invoke(cli, ["predict", str(tiny_bundle), "-i", str(_texts(tmp_path)), "-o", "-", "-q"])
    assert r.exit_code == 0, r.output
    assert [json.loads(line)["row"] for line in r.stdout.splitlines()] == [1, 2, 3]


def test_normal_mode_still_renders(tiny_bundle, tmp_path):
    r = CliRunner().invoke(cli, ["package", "triton", str(tiny_bundle), "-o", str(tmp_path / "t")])
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("wrote ")


def test_a_command_run_in_process_leaves_the_switches_as_they_were(clean_env, tmp_path):
    import os

    r = CliRunner().invoke(cli, ["predict", str(tmp_path / "nope"), "-i", "x.txt", "-o", "y.jsonl", "--quiet"])
    assert r.exit_code == 2
    assert not any(name in os.environ for name in (*progress.BAR_SWITCHES, *progress.QUIET_SWITCHES))
