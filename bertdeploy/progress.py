"""Progress bars only where a person watches: one switch for tqdm (datasets' ``map``, transformers' Trainer, the
Hub) and for the CLI's rich bars.

The CLI calls :func:`configure` once per command (``bertdeploy/cli/output.py``): on a terminal the bars stay as
they are; when stderr is a file or a pipe (CI, ``nohup``, ``2> log``), or with ``--quiet`` / ``--json``, every
bar is off, so a log holds the per-epoch table rows and the result tables, not thousands of ``it/s]`` redraws.
The switch is environment variables, read by tqdm (``TQDM_DISABLE``, any tqdm >= 4.66), datasets and
huggingface_hub, so it also reaches the processes a command starts (bench workers, Ray actors, torchrun ranks).
tqdm reads its variable when it is first imported, so :func:`configure` runs before a command imports the
training stack. Library code never calls this: it is the command line's choice.

Where no bar draws, a long job still says it is alive: training logs a line on the :data:`LINES` logger every few
minutes (step, epoch, loss, time to go), and the command line shows that logger's lines (:func:`lines`) exactly when
the bars are off in normal mode. A library caller sees them by giving the logger a handler.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from typing import Any, TextIO

#: environment variables that turn the progress bars of tqdm, datasets and huggingface_hub (which transformers
#: follows) off
BAR_SWITCHES = ("TQDM_DISABLE", "HF_DATASETS_DISABLE_PROGRESS_BARS", "HF_HUB_DISABLE_PROGRESS_BARS")
#: the logger of the progress lines that stand in for a bar in a log (INFO records, one line each)
LINES = "bertdeploy.progress"
#: what ``--quiet`` / ``--json`` add: the libraries' own info and warning logs (weights not initialised ...) off
QUIET_SWITCHES = {"TRANSFORMERS_VERBOSITY": "error", "DATASETS_VERBOSITY": "error"}


def is_tty(stream: TextIO | None = None) -> bool:
    """True when ``stream`` (default: stderr, where the bars draw) is an interactive terminal."""
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def bars_enabled() -> bool:
    """Whether progress bars are on for this process (False after :func:`configure` turned them off)."""
    return os.environ.get("TQDM_DISABLE", "") not in ("1", "true", "True")


def configure(*, bars: bool | None = None, quiet: bool = False) -> bool:
    """Turn progress bars on or off for this process and its children; returns whether they are on.

    Args:
        bars: True keeps the bars, False turns them off; None (default): on only when stderr is a terminal.
        quiet: also silence the libraries' info / warning logs (``--quiet`` and ``--json``).
    """
    show = is_tty() if bars is None else bars
    show = show and not quiet
    if not show:
        for name in BAR_SWITCHES:
            os.environ[name] = "1"
        _already_imported_off()
    if quiet:
        os.environ.update(QUIET_SWITCHES)
    return bars_enabled()


@contextlib.contextmanager
def configured(*, bars: bool | None = None, quiet: bool = False) -> Iterator[bool]:
    """:func:`configure` for the duration of a ``with`` block (a command), then the switches as they were: a
    command run in-process (tests, a notebook calling the CLI) leaves no trace."""
    names = (*BAR_SWITCHES, *QUIET_SWITCHES)
    before = {name: os.environ.get(name) for name in names}
    libraries = _library_bars()
    try:
        yield configure(bars=bars, quiet=quiet)
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        _restore_library_bars(libraries)


@contextlib.contextmanager
def lines(stream: TextIO, show: bool = True) -> Iterator[None]:
    """While the block runs, the :data:`LINES` logger's records go to ``stream`` as plain lines (when ``show``);
    the logger is left as it was afterwards."""
    if not show:
        yield
        return
    logger = logging.getLogger(LINES)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s"))
    before = (logger.level, logger.propagate)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(before[0])
        logger.propagate = before[1]


def _imported(name: str) -> Any:
    """``name``'s module if this process imported it (None, also for one blocked as ``sys.modules[name] = None``)."""
    return sys.modules.get(name)


def _hf_logging() -> Any:
    """transformers' logging module, when transformers is imported (None otherwise)."""
    if _imported("transformers") is None:
        return None
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:
        return None
    return hf_logging


def _library_bars() -> dict[str, bool]:
    """Whether datasets' / transformers' in-process bar switches were on (for those already imported)."""
    state = {}
    if (datasets := _imported("datasets")) is not None:
        state["datasets"] = bool(datasets.is_progress_bar_enabled())
    if (hf_logging := _hf_logging()) is not None:
        state["transformers"] = bool(hf_logging.is_progress_bar_enabled())
    return state


def _restore_library_bars(state: dict[str, bool]) -> None:
    if state.get("datasets") and (datasets := _imported("datasets")) is not None:
        datasets.enable_progress_bars()
    if state.get("transformers") and (hf_logging := _hf_logging()) is not None:
        hf_logging.enable_progress_bar()


def _already_imported_off() -> None:
    """The libraries that read their switch at import time, when this process imported them already."""
    if (datasets := _imported("datasets")) is not None:
        datasets.disable_progress_bars()
    if (hf_logging := _hf_logging()) is not None:
        hf_logging.disable_progress_bar()
