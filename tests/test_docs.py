"""The documentation is built and checked: ``mkdocs build --strict`` passes (broken links, missing pages and unknown
generated blocks fail it), each command's page carries its current ``--help``, the generated tables hold the code's
variants and tasks, and the shell examples of the README and the docs name only options their command has.

The build is skipped only where the ``docs`` extra is not installed; ``make install`` (CI) installs it."""

from __future__ import annotations

import html
import importlib.util
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from bertdeploy.cli import cli

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
README = ROOT / "README.md"
PAGES = sorted(DOCS.rglob("*.md"))


def _hook():
    spec = importlib.util.spec_from_file_location("gen_reference", DOCS / "gen_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _leaves(group: click.Group, prefix: tuple[str, ...] = ()):
    for name, cmd in group.commands.items():
        if isinstance(cmd, click.Group) and not (name == "bench" and not prefix):
            yield from _leaves(cmd, (*prefix, name))
        elif isinstance(cmd, click.Group):  # bench: its default subcommand is `run`, its other one `compare`
            yield (name,), cmd.commands["run"]
            yield from (((name, sub), c) for sub, c in cmd.commands.items() if sub != "run")
        else:
            yield (*prefix, name), cmd


COMMANDS = dict(_leaves(cli))


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    for module in ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python"):
        pytest.importorskip(module, reason='the docs extra is not installed (pip install -e ".[docs]")')
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    run = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"), "-d", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    return out


def _code_blocks(page: Path) -> list[str]:
    """The text of every <pre> block of a built page."""
    blocks = re.findall(r"<pre[^>]*>(.*?)</pre>", page.read_text(encoding="utf-8"), flags=re.S)
    return [html.unescape(re.sub(r"<[^>]+>", "", b)) for b in blocks]


@pytest.mark.parametrize("path", list(COMMANDS), ids=" ".join)
def test_each_command_page_carries_its_current_help(site, path):
    page = site / "commands" / path[0] / "index.html"
    assert page.is_file(), f"no page for bertdeploy {' '.join(path)}"
    hook = _hook()
    r = CliRunner().invoke(cli, [*path, "--help"], prog_name="bertdeploy", terminal_width=hook.HELP_WIDTH)
    assert r.exit_code == 0
    assert any(r.output.strip() in block for block in _code_blocks(page)), f"{page}: --help differs"
    text = html.unescape(page.read_text(encoding="utf-8"))
    for param in COMMANDS[path].params:
        for opt in param.opts if isinstance(param, click.Option) else ():
            assert opt in text


def test_generated_tables_hold_the_code(site):
    from bertdeploy.tasks import TASK_TABLE
    from bertdeploy.variants import VARIANT_TABLE

    text = html.unescape((site / "tables" / "index.html").read_text(encoding="utf-8"))
    for v in VARIANT_TABLE:
        assert f"<code>{v.file}</code>" in text
    for t in TASK_TABLE:
        assert f"<code>{t.name}</code>" in text and t.auto_model in text


def test_results_are_included_from_the_committed_files(site):
    text = html.unescape((site / "benchmarks" / "index.html").read_text(encoding="utf-8"))
    results = (ROOT / "benchmarks/runtime/final/RESULTS.md").read_text(encoding="utf-8")
    row = next(line for line in results.splitlines() if line.startswith("| `bertdeploy:qint8:bucketed` |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert all(c.strip("`") in text for c in cells)
    assert (site / "assets/benchmarks/runtime/final/bench/plots/pareto.png").is_file()


def test_an_unknown_generated_block_fails_the_build():
    pytest.importorskip("mkdocs")
    from mkdocs.exceptions import PluginError

    with pytest.raises(PluginError, match="unknown table"):
        _hook().generate("table", "nope", "x.md")
    with pytest.raises(PluginError, match="unknown cli"):
        _hook().generate("cli", "no-such-command", "x.md")


# ---------------------------------------------------------------- the examples stay true (no mkdocs needed)


def _shell_commands(text: str) -> list[str]:
    """``bertdeploy ...`` command lines in code blocks (continuations joined) and in inline code."""
    found = []
    for block in re.findall(r"```(?:bash|console|sh|text)?\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.strip().removeprefix("$ ")
            if line.startswith("bertdeploy "):
                found.append(line)
    found += [m for m in re.findall(r"`(bertdeploy [^`]+)`", text) if "--" in m]
    return found


def _check_options(line: str) -> list[str]:
    """The options of a ``bertdeploy`` line that its command does not have."""
    line = re.split(r" #|[;|]|&&", line, maxsplit=1)[0]  # the command, not a comment or the next one
    try:
        words = shlex.split(line)[1:]
    except ValueError:
        return []
    path: tuple[str, ...] = ()
    for word in words:
        if (*path, word) in COMMANDS or any(k[: len(path) + 1] == (*path, word) for k in COMMANDS):
            path = (*path, word)
        else:
            break
    if path not in COMMANDS:
        return []  # `bertdeploy package` alone, or prose
    known = {o for p in COMMANDS[path].params for o in (*p.opts, *getattr(p, "secondary_opts", ()))}
    known |= {"--help", "-h"}
    given = [w.split("=", 1)[0] for w in words if w.startswith("--") and len(w) > 2]
    return [f"bertdeploy {' '.join(path)} {opt}" for opt in given if opt not in known]


@pytest.mark.parametrize("doc", [README, *PAGES], ids=lambda p: str(p.relative_to(ROOT)))
def test_shell_examples_name_only_real_options(doc):
    text = doc.read_text(encoding="utf-8")
    wrong = [bad for line in _shell_commands(text) for bad in _check_options(line)]
    assert not wrong, f"{doc.name}: options that do not exist: {wrong}"


def test_makefile_commands_name_only_real_options():
    """The Makefile's recipes (bench-runtime, drcd-reader, ...) are commands nobody runs in CI: their options are
    checked against the CLI like the docs' examples, so a renamed option breaks this test, not a 2-hour run."""
    text = (ROOT / "Makefile").read_text(encoding="utf-8").replace("\\\n", " ")
    lines = [line[line.index("bertdeploy ") :] for line in text.splitlines() if "bertdeploy " in line]
    assert sum("--question-match" in line for line in lines) == 2  # the DRCD reader's two training stages
    wrong = [bad for line in lines for bad in _check_options(line)]
    assert not wrong, f"Makefile: options that do not exist: {wrong}"


REPO_PATH = re.compile(r"`((?:bertdeploy|benchmarks|recipes|tests|docs|\.ci)/[\w./-]*[\w/])`")


@pytest.mark.parametrize("doc", [README, *PAGES], ids=lambda p: str(p.relative_to(ROOT)))
def test_repository_paths_named_in_the_docs_exist(doc):
    missing = [p for p in REPO_PATH.findall(doc.read_text(encoding="utf-8")) if not (ROOT / p).exists()]
    assert not missing, f"{doc.name} names files that are not in the repository: {missing}"


def test_readme_is_short_and_links_into_the_docs():
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 200
    links = re.findall(r"\]\((docs/[^)#]+)", text)
    assert links, "the README links into docs/"
    assert all((ROOT / link).is_file() for link in links), links
    assert "make quickstart" in text and "make test" in text
