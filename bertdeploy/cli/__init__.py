"""The ``bertdeploy`` command: a click group whose commands each parse options, call ONE library function
and render its result. One small module per command (``bertdeploy/cli/<command>.py``)."""

from __future__ import annotations

import sys
import warnings

import click

from bertdeploy import __version__
from bertdeploy.cli import output
from bertdeploy.errors import UserError, missing_extra


class _Group(click.Group):
    """Turns a :class:`UserError`, a bad option, a full disk and a missing optional dependency (the commands import
    the heavy stack lazily: the line names the extra) into one line on stderr and exit code 2; SIGTERM is handled like
    Ctrl-C (``cli/signals.py``): exit 143, resp. 130, after the cleanup ran. A warning is one ``warning:`` line."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta[output.ARGV] = list(args)  # a usage error in --json mode still answers JSON
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        from bertdeploy.cli.signals import Terminated, sigterm_as_interrupt
        from bertdeploy.disk import DISK_ERRNOS

        try:
            with sigterm_as_interrupt(), warnings.catch_warnings():
                warnings.showwarning = _warning_line
                return super().invoke(ctx)
        except UserError as e:
            output.fail(ctx, f"error: {e}", 2)
        except click.UsageError as e:  # a bad option of a command: one line too
            where = e.ctx.command_path if e.ctx else ctx.command_path
            output.fail(ctx, f"error: {e.format_message()} (see {where} --help)", 2, where)
        except OSError as e:
            if e.errno not in DISK_ERRNOS:
                raise
            where = e.filename2 or e.filename or "while writing"  # a copy's destination, not its source
            output.fail(ctx, f"error: {e.strerror}: {where}", 2)
        except ImportError as e:
            missing = missing_extra(e, f"bertdeploy {ctx.invoked_subcommand}" if ctx.invoked_subcommand else "")
            if missing is None:
                raise
            output.fail(ctx, f"error: {missing}", 2)
        except KeyboardInterrupt as e:
            terminated = isinstance(e, Terminated)
            output.fail(ctx, "terminated" if terminated else "interrupted", 143 if terminated else 130)


def _warning_line(message: Warning | str, category: type[Warning], *args: object, **kwargs: object) -> None:
    """A warning as one ``warning:`` line on stderr (not Python's two lines of file, line number and source)."""
    click.echo(f"warning: {str(message).strip()}", err=True)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="bertdeploy")
def cli() -> None:
    """Fine-tune, export, validate, benchmark and serve BERT-family text classifiers."""


def _register() -> None:
    from bertdeploy.cli import bench, data, distill, export, package, predict, pretrain, quickstart, serve, train

    for module in (quickstart, data, pretrain, train, distill, export, predict, serve, bench, package):
        cli.add_command(output.with_output_modes(module.command))


_register()


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    cli.main(args=argv if argv is not None else sys.argv[1:], prog_name="bertdeploy")
