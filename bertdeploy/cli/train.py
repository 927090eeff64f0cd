"""`bertdeploy train` (placeholder until implemented)."""

from __future__ import annotations

import click


@click.command(name="train")
def command() -> None:
    """Not implemented yet."""
    raise click.UsageError("bertdeploy train is not implemented yet")
