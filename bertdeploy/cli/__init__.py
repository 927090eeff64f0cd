"""The ``bertdeploy`` command: a click group whose commands each parse options, call ONE library function
and render its result. One small module per command (``bertdeploy/cli/<command>.py``)."""

from __future__ import annotations

import sys

import click

from bertdeploy import __version__
from bertdeploy.errors import UserError


class _Group(click.Group):
    """Turns a :class:`UserError` into one line on stderr and exit code 2 (no traceback)."""

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except UserError as e:
            click.echo(f"error: {e}", err=True)
            ctx.exit(2)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="bertdeploy")
def cli() -> None:
    """Fine-tune, export, validate, benchmark and serve BERT-family text classifiers."""


def _register() -> None:
    from bertdeploy.cli import bench, data, distill, export, package, predict, quickstart, train

    for module in (quickstart, data, train, distill, export, predict, bench, package):
        cli.add_command(module.command)


_register()


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    cli.main(args=argv if argv is not None else sys.argv[1:], prog_name="bertdeploy")
