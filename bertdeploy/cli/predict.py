"""`bertdeploy predict` (placeholder until implemented)."""

from __future__ import annotations

import click


@click.command(name="predict")
def command() -> None:
    """Not implemented yet."""
    raise click.UsageError("bertdeploy predict is not implemented yet")
