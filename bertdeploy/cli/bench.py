"""`bertdeploy bench` (placeholder until implemented)."""

from __future__ import annotations

import click


@click.command(name="bench")
def command() -> None:
    """Not implemented yet."""
    raise click.UsageError("bertdeploy bench is not implemented yet")
