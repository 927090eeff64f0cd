"""MkDocs hook (``hooks:`` in mkdocs.yml): the parts of the documentation that are generated, so they cannot drift.

A page asks for a generated block with an HTML comment on a line of its own (invisible if the hook did not run;
an unknown one fails the build):

* ``<!-- cli: package triton -->`` — the command's option reference: its ``--help`` text verbatim and a table of
  its options, from the click command itself (``bertdeploy.cli``).
* ``<!-- table: variants -->`` / ``<!-- table: tasks -->`` / ``<!-- table: commands -->`` — the variant table
  (``bertdeploy/variants.py``), the task table (``bertdeploy/tasks.py``), the command list.
* ``<!-- include: benchmarks/runtime/final/RESULTS.md -->`` — a committed file of the repository, as it is
  (``PATH#NAME``: only the lines between ``<!-- NAME:start -->`` and ``<!-- NAME:end -->``; ``PATH#table-N``: its
  N-th Markdown table; ``... shift=2``: its headings two levels deeper, under the page's own). Its relative links
  become repository paths in code, its images the copies this hook adds to the site (``assets/benchmarks/...``).

Standard MkDocs 1.6 only (no plugin): ``on_files`` adds the committed benchmark plots, ``on_page_markdown`` fills
the markers. ``tests/test_docs.py`` builds the site with ``--strict`` and compares the pages with ``--help``.
"""

from __future__ import annotations

import html
import posixpath
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MARKER = re.compile(r"^<!--\s*(cli|table|include):\s*(.*?)\s*-->\s*$", re.MULTILINE)
#: the width --help is rendered at, here and in tests/test_docs.py
HELP_WIDTH = 100
#: where the committed plots under benchmarks/ appear in the site
ASSETS = "assets"
_LINK = re.compile(r"(!?)\[([^\]]*)\]\(([^)\s]+)\)")


def on_config(config: Any) -> Any:
    """Document this checkout's bertdeploy, whatever is installed."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    return config


def on_files(files: Any, config: Any) -> Any:
    """Add every committed plot under ``benchmarks/`` to the site, at ``assets/benchmarks/...``."""
    from mkdocs.structure.files import File

    for path in sorted((ROOT / "benchmarks").rglob("*.png")):
        if ".work" in path.parts:
            continue
        rel = path.relative_to(ROOT).as_posix()
        files.append(File.generated(config, f"{ASSETS}/{rel}", abs_src_path=str(path)))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """Replace each marker of the page with its generated Markdown."""
    return MARKER.sub(lambda m: generate(m.group(1), m.group(2), page.file.src_uri), markdown)


def on_page_content(html_text: str, page: Any, config: Any, files: Any) -> str:
    """The docstrings' Sphinx roles, which mkdocstrings leaves as text, as code: ``:class:`~a.b.C``` -> ``C``,
    ``:func:`a.b``` -> ``a.b``."""

    def plain(m: re.Match[str]) -> str:
        tilde, name = m.groups()
        return f"<code>{name.rsplit('.', 1)[-1] if tilde else name}</code>"

    return _ROLE.sub(plain, html_text)


_ROLE = re.compile(r":(?:class|func|meth|mod|data|attr|exc|obj):<code>(~?)([\w.]+)</code>")


def generate(kind: str, arg: str, page_uri: str) -> str:
    """The Markdown for one marker (``kind``: cli | table | include) on the page ``page_uri``."""
    from mkdocs.exceptions import PluginError

    try:
        if kind == "cli":
            return command_reference(arg.split())
        if kind == "table":
            return TABLES[arg](posixpath.dirname(page_uri))
        return include(arg, page_uri)
    except KeyError as e:
        raise PluginError(f"{page_uri}: unknown {kind} {arg!r} ({e})") from None


# ---------------------------------------------------------------- commands


def help_text(path: list[str]) -> str:
    """``bertdeploy PATH --help`` as the command prints it (at :data:`HELP_WIDTH` columns)."""
    from click.testing import CliRunner

    from bertdeploy.cli import cli

    result = CliRunner().invoke(cli, [*path, "--help"], prog_name="bertdeploy", terminal_width=HELP_WIDTH)
    if result.exit_code != 0:
        raise KeyError(f"bertdeploy {' '.join(path)} --help failed: {result.output}")
    return result.output


def find_command(path: list[str]) -> Any:
    """The click command at ``path`` (``bench`` is its default subcommand ``run``)."""
    import click

    from bertdeploy.cli import cli

    cmd: Any = cli
    for name in path:
        cmd = cmd.commands[name]
    if isinstance(cmd, click.Group) and "run" in cmd.commands:
        cmd = cmd.commands["run"]
    return cmd


def _cell(text: str) -> str:
    return html.escape(" ".join(text.split())).replace("|", "&#124;")


def command_reference(path: list[str]) -> str:
    """A command's ``--help`` verbatim and a table of its arguments and options."""
    import click

    from bertdeploy.cli import cli

    usage = help_text(path)
    cmd = find_command(path)
    names = cli.context_settings.get("help_option_names", ["--help"])  # as the real context chain has them
    ctx = click.Context(cmd, info_name=" ".join(["bertdeploy", *path]), help_option_names=names)
    rows = []
    for param in cmd.get_params(ctx):
        if isinstance(param, click.Argument):
            name = param.human_readable_name
            rows.append(f"| `{name}` | argument{' (required)' if param.required else ''} |")
            continue
        record = param.get_help_record(ctx)
        if record is not None:
            rows.append(f"| `{_cell(record[0])}` | {_cell(record[1]) or '&nbsp;'} |")
    title = " ".join(["bertdeploy", *path])
    return "\n".join(
        [
            f"### `{title}` options",
            "",
            "Generated from the command itself (`docs/gen_reference.py`): what `--help` prints, then every option.",
            "",
            "```text",
            usage.rstrip(),
            "```",
            "",
            "| option | meaning |",
            "|---|---|",
            *rows,
            "",
        ]
    )


def commands_table(page_dir: str) -> str:
    """Every command, its first help line and its page (linked from a page in ``page_dir``)."""
    import click

    from bertdeploy.cli import cli

    rows = []
    for name, cmd in cli.commands.items():
        subs = cmd.commands if isinstance(cmd, click.Group) and name != "bench" else {"": cmd}
        for sub, leaf in subs.items():
            if isinstance(leaf, click.Group) and "run" in leaf.commands:
                leaf = leaf.commands["run"]
            path = f"{name} {sub}".strip()
            short = leaf.get_short_help_str(limit=110)
            link = posixpath.relpath(f"commands/{name}.md", page_dir or ".")
            rows.append(f"| [`bertdeploy {path}`]({link}) | {_cell(short)} |")
    return "\n".join(["| command | what it does |", "|---|---|", *rows, ""])


# ---------------------------------------------------------------- tables from the code


def variants_table(page_dir: str = "") -> str:
    """The variant table of ``bertdeploy/variants.py``."""
    from bertdeploy.variants import VARIANT_TABLE

    rows = []
    for v in VARIANT_TABLE:
        gate = "accuracy drop ≤ budget" if v.gated_on_accuracy else f"agreement ≥ {v.min_agreement:.1%}"
        rank = " / ".join(str(v.auto_rank.get(d, "–")) for d in ("cpu", "cuda"))
        flag = f"`{v.cli_flag}`" if v.cli_flag else (f"`--optimize {v.name}`" if v.build == "optimize" else "always")
        if v.runs and not v.cli_flag:  # an execution variant: the file of `runs` on another provider
            flag = f"`--all` / `variants={v.runs},{v.name}`"
        js = f"`{v.js_dtype}`" if v.js_dtype else "–"
        precision = v.precision if v.provider == "cpu" else f"{v.precision} file on {v.provider}, hint {v.hint}"
        cells = [f"`{v.name}`", f"`{v.file}`", precision, v.build, gate, rank, flag, js, _cell(v.help)]
        rows.append("| " + " | ".join(cells) + " |")
    heads = ["variant", "file", "precision", "builder", "gate", "auto rank (cpu / cuda)", "export flag"]
    head = "| " + " | ".join([*heads, "transformers.js", "what"]) + " |"
    return "\n".join([head, "|---" * 9 + "|", *rows, ""])


def tasks_table(page_dir: str = "") -> str:
    """The task table of ``bertdeploy/tasks.py``."""
    from bertdeploy.tasks import TASK_TABLE

    rows = []
    for t in TASK_TABLE:
        outputs = ", ".join(f"`{k}` [{', '.join(v)}]" for k, v in t.outputs.items())
        rows.append(
            f"| `{t.name}` | `{t.auto_model}` | {', '.join(t.record)} | {outputs} | {t.parity} | {t.metric.label} "
            f"| {t.head} | {', '.join(t.stages)} |"
        )
    head = "| task | model class | record fields | ONNX outputs | export parity | metric | runtime head | stages |"
    return "\n".join([head, "|---|---|---|---|---|---|---|---|", *rows, ""])


TABLES = {"variants": variants_table, "tasks": tasks_table, "commands": commands_table}


# ---------------------------------------------------------------- committed files


def include(spec: str, page_uri: str) -> str:
    """A repository file (or one marked section of it), links made to work from ``page_uri``."""
    spec, _, shift = spec.partition(" shift=")
    rel, _, section = spec.partition("#")
    path = ROOT / rel
    if not path.is_file():
        raise KeyError(f"no such file {rel}")
    text = path.read_text(encoding="utf-8")
    if section.startswith("table-"):
        text = _nth_table(text, int(section.removeprefix("table-")), rel)
    elif section:
        start, end = f"<!-- {section}:start -->", f"<!-- {section}:end -->"
        if start not in text or end not in text:
            raise KeyError(f"no section {section!r} in {rel}")
        text = text.split(start, 1)[1].split(end, 1)[0]
    base = posixpath.dirname(rel)
    page_dir = posixpath.dirname(page_uri)

    def relink(m: re.Match[str]) -> str:
        bang, label, target = m.groups()
        if re.match(r"^[a-z]+:|^#", target):
            return m.group(0)
        repo_path = posixpath.normpath(posixpath.join(base, target))
        if bang and repo_path.startswith("benchmarks/") and (ROOT / repo_path).is_file():
            return f"![{label}]({posixpath.relpath(f'{ASSETS}/{repo_path}', page_dir or '.')})"
        return f"{label} (`{repo_path}`)" if label and label != repo_path else f"`{repo_path}`"

    return _shift_headings(_LINK.sub(relink, text), int(shift or 0))


def _shift_headings(text: str, levels: int) -> str:
    """Headings ``levels`` deeper (outside code fences): an included file's ``#`` title under a page's own."""
    if not levels:
        return text
    out, fenced = [], False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and re.match(r"^#{1,6} ", line):
            line = "#" * levels + line
        out.append(line)
    return "\n".join(out) + "\n"


def _nth_table(text: str, n: int, rel: str) -> str:
    """The ``n``-th (1-based) Markdown table of ``text``: a run of lines starting with ``|``."""
    tables: list[list[str]] = []
    previous = False
    for line in text.splitlines():
        is_row = line.startswith("|")
        if is_row and not previous:
            tables.append([])
        if is_row:
            tables[-1].append(line)
        previous = is_row
    if not 1 <= n <= len(tables):
        raise KeyError(f"{rel} has {len(tables)} table(s), not a table {n}")
    return "\n".join(tables[n - 1]) + "\n"
