"""Install profiles: a command whose extra is not installed says so in one line naming the extra (exit 2), and
the light modules import nothing heavy. The modules an extra provides are hidden by ``sys.modules[name] = None``
in a fresh interpreter (the CI job `light-venv` checks a real ``[cpu]`` install)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bertdeploy.errors import MissingExtraError, UserError, missing_extra

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "optimum", "datasets", "sklearn", "matplotlib", "pandas", "pyarrow", "ray")


def _python(code: str, hide: tuple[str, ...]) -> subprocess.CompletedProcess:
    prelude = f"import sys\nfor m in {hide!r}:\n    sys.modules[m] = None\n"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-c", prelude + code], env=env, capture_output=True, text=True, timeout=120)


def _cli(args: list[str], hide: tuple[str, ...]) -> subprocess.CompletedProcess:
    return _python(f"from bertdeploy.cli import main\nmain({args!r})", hide)


@pytest.mark.parametrize(
    ("args", "hide", "needle"),
    [
        (["train", "--model", "bert-tiny", "--data", "{data}", "-o", "{out}"], HEAVY, 'bertdeploy[train,cpu]"'),
        (["distill", "--teacher", "{bundle}", "--data", "{data}", "-o", "{out}"], HEAVY, 'bertdeploy[train,cpu]"'),
        (["pretrain", "--model", "bert-tiny", "--data", "{data}", "-o", "{out}"], HEAVY, 'bertdeploy[train,cpu]"'),
        (["export", "{out}", "-o", "{out}2"], HEAVY, 'bertdeploy[train,cpu]"'),
        (["bench", "{out}", "-o", "{out}3"], HEAVY, 'bertdeploy[train,cpu]"'),
        (["data", "stats", "--data", "{data}"], HEAVY, 'bertdeploy[train,cpu]"'),
        (["predict", "{bundle}", "-i", "-", "-o", "-"], ("onnxruntime",), 'bertdeploy[cpu]" (or "bertdeploy[gpu]"'),
        (["serve", "{bundle}"], ("starlette",), 'bertdeploy[serve,cpu]"'),
    ],
    ids=["train", "distill", "pretrain", "export", "bench", "data-stats", "predict", "serve"],
)
def test_a_missing_extra_is_one_line_naming_it_exit_2(args, hide, needle, tiny_bundle, tiny_data_dir, tmp_path):
    values = {"data": str(tiny_data_dir), "out": str(tmp_path / "out"), "bundle": str(tiny_bundle)}
    r = _cli([a.format(**values) for a in args], hide)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    command = " ".join(args[:2]) if args[0] == "data" else args[0]
    assert len(lines) == 1 and lines[0].startswith(f"error: bertdeploy {command} needs ") and needle in lines[0]
    assert "Traceback" not in r.stderr


def test_the_cli_registers_every_command_without_the_heavy_stack():
    r = _python("from bertdeploy.cli import cli\nprint(sorted(cli.commands))", HEAVY + ("onnxruntime", "starlette"))
    assert r.returncode == 0, r.stderr
    names = {"bench", "data", "distill", "export", "package", "predict", "pretrain", "quickstart", "serve", "train"}
    assert set(r.stdout.strip().strip("[]").replace("'", "").split(", ")) == names


def test_the_runtime_and_serve_import_nothing_heavy(tiny_bundle):
    code = (
        "import bertdeploy, bertdeploy.serve\n"
        f"clf = bertdeploy.load({str(tiny_bundle)!r})\n"
        "bertdeploy.serve.app(clf)\n"
        "print(len(clf.predict(['a good day'])))\n"
    )
    r = _python(code, HEAVY)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "1"


def test_the_triton_answers_step_imports_nothing_heavy(tiny_qa_bundle, tmp_path):
    """What Triton's Python environment needs for a QA repository's answers step: bertdeploy's runtime alone."""
    code = (
        "import bertdeploy.package.triton_answers\n"
        "from bertdeploy.package import triton_repository\n"
        f"r = triton_repository({str(tiny_qa_bundle)!r}, {str(tmp_path / 'repo')!r}, name='qa', kind='cpu')\n"
        "print(r.answers)\n"
    )
    r = _python(code, HEAVY)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "qa_reader"


def test_the_lazy_api_names_the_extra():
    r = _python("import bertdeploy\nbertdeploy.export", HEAVY)
    assert r.returncode == 1 and "MissingExtraError" in r.stderr and 'bertdeploy[train,cpu]"' in r.stderr


def test_missing_extra_only_claims_modules_an_extra_provides():
    assert isinstance(missing_extra(ModuleNotFoundError("x", name="torch.nn")), MissingExtraError)
    assert missing_extra(ModuleNotFoundError("x", name="bertdeploy.nope")) is None  # a bug, not an install
    assert missing_extra(ImportError("cannot import name 'x' from 'torch'", name="torch")) is None
    error = MissingExtraError("m")
    assert missing_extra(error) is error and isinstance(error, (UserError, ImportError))
