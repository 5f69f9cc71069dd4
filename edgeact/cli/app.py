"""The `edgeact` group: the boundary where errors become one line, and the commands it holds.

Every EdgeactError becomes a one-line `error: ...` and its exit code in one place,
`EdgeactGroup.invoke`, so the console script and click's CliRunner behave the same.
"""
from __future__ import annotations

import click

from edgeact import __version__
from edgeact.errors import EdgeactError, first_line

from .convert import convert
from .device import device
from .inspect import inspect
from .layers import layers
from .options import verbose_option
from .profile import profile


class EdgeactGroup(click.Group):
    """The boundary where library errors become one line on stderr and an exit code."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args and not ctx.resilient_parsing:  # `edgeact` alone asks for help; it is no mistake
            click.echo(ctx.get_help())
            ctx.exit(0)
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except EdgeactError as exc:
            # One line a person can read: a library message is one line already; a runtime's
            # text inside it is cut (the report holds the rest).
            click.echo(f"error: {first_line(exc, 400)}", err=True)
            from edgeact.quiet import verbose

            if exc.detail and verbose():  # `edgeact -v`: the library's full message the line above quotes
                click.echo(f"the full message:\n{exc.detail}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)


@click.group(cls=EdgeactGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="edgeact")
@verbose_option
def cli() -> None:
    """Put quantized CNNs on edge devices: convert Keras models to INT8 TFLite and ONNX, inspect
    and profile them on the desktop or on a Raspberry Pi / Coral."""


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    cli.main(args=argv, prog_name="edgeact")


for command in (convert, inspect, profile, layers, device):
    cli.add_command(command)
