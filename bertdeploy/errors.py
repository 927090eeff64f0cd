"""Error types. A :class:`UserError` is a mistake in what the user asked for (bad path, bad column, bad
bundle): the CLI prints its message as one line on stderr and exits with code 2. Anything else is a bug."""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input; shown as one line, exit code 2, no traceback."""


class MissingExtraError(UserError):
    """An optional dependency is missing; the message says which extra to install."""


def require(module: str, extra: str) -> None:
    """Raise :class:`MissingExtraError` when ``module`` cannot be imported."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise MissingExtraError(f'{module} is not installed: pip install "bertdeploy[{extra}]"')
