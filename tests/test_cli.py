"""The command line: --help for every command, user errors as one line + exit code 2, nothing written."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from bertdeploy.cli import cli

COMMANDS = [
    ["quickstart"],
    ["data", "stats"],
    ["pretrain"],
    ["train"],
    ["distill"],
    ["export"],
    ["predict"],
    ["serve"],
    ["bench"],
    ["bench", "compare"],
    ["package", "triton"],
    ["package", "wheel"],
]


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: " ".join(a))
def test_help(args):
    r = CliRunner().invoke(cli, [*args, "--help"])
    assert r.exit_code == 0, r.output
    assert "Usage:" in r.output


def _run(args):
    r = CliRunner().invoke(cli, args)
    return r.exit_code, r.stderr if hasattr(r, "stderr") else r.output


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--data", "does/not/exist.csv"], "data path not found"),
        (["--model", "bert-colossal"], "unknown model preset"),
        (["--text-column", "sentence"], "no column 'sentence'"),
        (["padding=ragged"], "padding must be one of"),
        (["--resume"], "no complete checkpoint"),
    ],
)
def test_train_bad_input_is_one_line_exit_2(tiny_model_dir, tiny_data_dir, tmp_path, extra, message):
    args = ["train", "--model", str(tiny_model_dir), "--data", str(tiny_data_dir), "--output", str(tmp_path / "run")]
    code, err = _run([*args, *extra])
    assert code == 2, err
    lines = [line for line in err.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and message in lines[0], err
    assert "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_train_refuses_existing_run_without_overwrite(tiny_model_dir, tiny_data_dir, tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.json").write_text("{}")
    code, err = _run(
        ["train", "--model", str(tiny_model_dir), "--data", str(tiny_data_dir), "-o", str(tmp_path / "run")]
    )
    assert code == 2 and "already exists" in err and "--overwrite" in err


def test_data_stats(tiny_data_dir, tmp_path):
    plot = tmp_path / "h.png"
    r = CliRunner().invoke(cli, ["data", "stats", "--data", str(tiny_data_dir), "--plot", str(plot)])
    assert r.exit_code == 0, r.output
    assert "max_length covering 95 %" in r.output and "negative" in r.output
    assert plot.read_bytes()[:4] == b"\x89PNG"
    code, err = _run(["data", "stats", "--data", str(tmp_path / "missing")])
    assert code == 2 and "not found" in err


def test_data_stats_writes_no_file_unless_asked(tiny_data_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(cli, ["data", "stats", "--data", str(tiny_data_dir)])
    assert r.exit_code == 0, r.output
    assert "max_length covering 95 %" in r.output and "histogram" not in r.output
    assert list(tmp_path.iterdir()) == []


def test_recipe_errors(tmp_path):
    bad = tmp_path / "r.yaml"
    bad.write_text("model: minilm-l6\nlearning_rate: 3\n")
    code, err = _run(["train", "--recipe", str(bad)])
    assert code == 2 and "unknown recipe keys" in err
    code, err = _run(["train", "--recipe", str(tmp_path / "nope.yaml")])
    assert code == 2 and "recipe not found" in err
