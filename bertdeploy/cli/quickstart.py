"""`bertdeploy quickstart` (placeholder until implemented)."""

from __future__ import annotations

import click


@click.command(name="quickstart")
def command() -> None:
    """Not implemented yet."""
    raise click.UsageError("bertdeploy quickstart is not implemented yet")
