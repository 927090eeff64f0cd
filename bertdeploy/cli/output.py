"""The output modes every command shares: ``--quiet`` and ``--json``, added in one place.

:func:`with_output_modes` gives each command (each leaf of a group) the two flags and wraps its callback:

* normal: the command's rich tables on stdout; progress bars on stderr only when stderr is a terminal
  (:func:`bertdeploy.progress.configure`), otherwise a progress line on stdout every few minutes of training.
* ``--quiet``: nothing on stdout but the command's data (``predict -o -``), nothing on stderr but ``error:`` and
  ``warning:`` lines; no progress bars, no library logs.
* ``--json``: as quiet, plus ONE JSON object on stdout when the command ends, for a pipeline to parse:
  ``{"command": "bertdeploy export", "ok": true, "result": {...}}``, or ``{"command": ..., "ok": false,
  "exit_code": 2, "error": "..."}`` (the ``error:`` line is on stderr as always).

A command takes part by *returning* its library result (a dataclass, a dict ...): that is the ``result``
(:func:`jsonable` turns it into JSON types). A command that must exit non-zero after producing a result stores it
with :func:`set_result` first.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import io
import json
import math
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import PurePath
from typing import Any, TextIO

import click

from bertdeploy import progress

#: ``ctx.meta`` keys (meta is shared by a context and its children, so the group's error handler sees them)
MODE = "bertdeploy.output.mode"
RESULT = "bertdeploy.output.result"
STDOUT = "bertdeploy.output.stdout"
ARGV = "bertdeploy.output.argv"
PATH = "bertdeploy.output.path"
#: stderr lines that ``--quiet`` / ``--json`` let through
KEPT_PREFIXES = ("error:", "warning:")

QUIET_HELP = "Print nothing but errors and warnings (and the command's data on stdout, e.g. predict -o -)."
JSON_HELP = "Print one JSON object on stdout when done (the result, or the error); nothing else."


def with_output_modes(command: click.Command) -> click.Command:
    """Add ``--quiet`` / ``--json`` to ``command`` (to every leaf command of a group) and wrap its callback."""
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            with_output_modes(sub)
        return command
    names = {p.name for p in command.params}
    if "json_output" in names:
        return command  # already wrapped
    own_quiet = "quiet" in names
    if not own_quiet:
        command.params.append(click.Option(["--quiet", "-q"], is_flag=True, help=QUIET_HELP))
    command.params.append(click.Option(["--json", "json_output"], is_flag=True, help=JSON_HELP))
    command.callback = _wrap(command.callback, own_quiet)
    return command


def _wrap(callback: Callable[..., Any] | None, own_quiet: bool) -> Callable[..., Any]:
    assert callback is not None

    @functools.wraps(callback)
    def run(*args: Any, **kwargs: Any) -> Any:
        as_json = kwargs.pop("json_output")
        quiet = kwargs["quiet"] if own_quiet else kwargs.pop("quiet")
        mode = "json" if as_json else "quiet" if quiet else "normal"
        ctx = click.get_current_context()
        ctx.meta[MODE] = mode
        ctx.meta[PATH] = ctx.command_path
        with progress.configured(quiet=mode != "normal") as bars:
            with progress.lines(sys.stdout, show=mode == "normal" and not bars):  # a log: lines instead of bars
                return _call(ctx, mode, callback, args, kwargs)

    return run


def _call(ctx: click.Context, mode: str, callback: Callable[..., Any], args: Any, kwargs: dict[str, Any]) -> Any:
    if mode == "normal":
        return callback(*args, **kwargs)
    data_on_stdout = kwargs.get("output") == "-"
    if mode == "json" and data_on_stdout:
        from bertdeploy.errors import UserError

        raise UserError("--json prints its object on stdout: give --output a file, not -")
    ctx.meta[STDOUT] = sys.stdout
    with _silenced(keep_stdout=data_on_stdout):
        result = callback(*args, **kwargs)
    if mode == "json":
        emit(ctx, {"ok": True, "result": result if result is not None else ctx.meta.get(RESULT)})
    return result


def set_result(result: Any) -> None:
    """Record ``result`` as the command's JSON result before it exits non-zero (e.g. export's rejected variant)."""
    ctx = click.get_current_context(silent=True)
    if ctx is not None:
        ctx.meta[RESULT] = result


def mode_of(ctx: click.Context) -> str:
    """``normal`` | ``quiet`` | ``json`` (from the parsed flag, else from the raw arguments: a usage error)."""
    if MODE in ctx.meta:
        return ctx.meta[MODE]
    argv = ctx.meta.get(ARGV, [])
    argv = argv[: argv.index("--")] if "--" in argv else argv
    return "json" if "--json" in argv else "quiet" if ("--quiet" in argv or "-q" in argv) else "normal"


def fail(ctx: click.Context, message: str, code: int, command: str | None = None) -> None:
    """The one way a command fails: ``message`` on stderr, the JSON error object on stdout in ``--json`` mode,
    exit ``code``. ``command``: the command's path when the failure came before it ran (a usage error)."""
    click.echo(message, err=True)
    if command and PATH not in ctx.meta:
        ctx.meta[PATH] = command
    if mode_of(ctx) == "json":
        error = message.removeprefix("error: ")
        emit(ctx, {"ok": False, "exit_code": code, "error": error, "result": jsonable(ctx.meta.get(RESULT))})
    ctx.exit(code)


def emit(ctx: click.Context, payload: dict[str, Any]) -> None:
    """Write ``{"command": ..., **payload}`` as one JSON line on the real stdout."""
    out: TextIO = ctx.meta.get(STDOUT) or sys.stdout
    path = (ctx.meta.get(PATH) or ctx.command_path).split()
    command = " ".join(["bertdeploy", *path[1:]])  # the program's name, however it was started
    obj = {"command": command, **{k: jsonable(v) for k, v in payload.items()}}
    out.write(json.dumps(obj, ensure_ascii=False, allow_nan=False) + "\n")
    out.flush()


def jsonable(value: Any, _depth: int = 0) -> Any:
    """``value`` as JSON types: dataclasses and mappings as objects, sequences as lists, paths as strings, numpy
    scalars and arrays as numbers and lists, NaN / inf as null, anything else as its ``str``."""
    if _depth > 50:
        return str(value)
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, PurePath):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name), _depth + 1) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): jsonable(v, _depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v, _depth + 1) for v in value]
    if hasattr(value, "tolist") and callable(value.tolist):  # numpy scalars and arrays
        return jsonable(value.tolist(), _depth + 1)
    return str(value)


@contextlib.contextmanager
def _silenced(*, keep_stdout: bool) -> Iterator[None]:
    """stdout to nowhere (unless it carries the command's data), stderr through :class:`_KeptLines`."""
    stderr = _KeptLines(sys.stderr)
    with contextlib.ExitStack() as stack:
        if not keep_stdout:
            stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
        stack.enter_context(contextlib.redirect_stderr(stderr))
        try:
            yield
        finally:
            stderr.flush()


class _KeptLines(io.TextIOBase):
    """A text stream that passes on only whole lines starting with :data:`KEPT_PREFIXES` (any case)."""

    def __init__(self, target: TextIO) -> None:
        super().__init__()
        self._target = target
        self._pending = ""

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def write(self, text: str) -> int:
        self._pending += text
        *lines, self._pending = self._pending.split("\n")
        for line in lines:
            self._pass(line)
        return len(text)

    def flush(self) -> None:
        if self._pending:
            self._pass(self._pending)
            self._pending = ""
        self._target.flush()

    def _pass(self, line: str) -> None:
        if line.lstrip().lower().startswith(KEPT_PREFIXES):  # also uvicorn's / logging's "ERROR:", "WARNING:"
            self._target.write(line + "\n")
