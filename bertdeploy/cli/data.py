"""`bertdeploy data` (placeholder until implemented)."""

from __future__ import annotations

import click


@click.command(name="data")
def command() -> None:
    """Not implemented yet."""
    raise click.UsageError("bertdeploy data is not implemented yet")
