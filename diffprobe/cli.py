"""The ``diffprobe`` command line: thin click commands that build configs and call the library.

Every command lives in ``diffprobe.commands`` (one module per area) and is registered here. Heavy
imports (torch, zarr …) happen inside commands so that ``--help`` is instant.
"""

from __future__ import annotations

import logging
import os
import traceback
from typing import Any

import click

from diffprobe._version import __version__
from diffprobe.commands.cka import cka_group
from diffprobe.commands.demo import demo
from diffprobe.commands.extract import extract
from diffprobe.commands.models import blocks, models
from diffprobe.commands.probe import probe_group
from diffprobe.commands.store import store_group
from diffprobe.commands.sweep import sweep
from diffprobe.errors import DiffprobeError

#: The group's own flags, accepted anywhere on the command line (``diffprobe extract … -v``).
_ANYWHERE = frozenset({"-v", "-vv", "-vvv", "--verbose", "-q", "--quiet", "--busy-wait"})


class _Group(click.Group):
    """A click group that turns library errors into clean CLI errors (no traceback) and takes
    ``-v``/``-q`` after the subcommand too."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        end = args.index("--") if "--" in args else len(args)
        hoisted = [a for a in args[:end] if a in _ANYWHERE]
        rest = [a for a in args[:end] if a not in _ANYWHERE] + args[end:]
        return super().parse_args(ctx, hoisted + rest)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DiffprobeError as e:
            if ctx.params.get("verbose"):  # -v: the traceback too (without it, one clean message)
                click.echo(traceback.format_exc(), err=True)
            raise click.ClickException(str(e)) from e
        except KeyboardInterrupt as e:  # Ctrl-C (or SIGTERM during an extraction): the shell's 128 + signal
            code = interrupted_exit_code(e)
            click.echo(f"interrupted (signal {code - 128}); finished work is kept: re-run the same command to resume", err=True)
            ctx.exit(code)


def interrupted_exit_code(error: KeyboardInterrupt) -> int:
    """128 + the signal that stopped the command: SIGINT (130) unless the interrupt names another."""
    text = str(error.args[0]) if error.args else ""
    number = text.removeprefix("signal ")
    return 128 + (int(number) if number.isdigit() else 2)


#: Libraries whose INFO lines (dask's scheduler and nannies start, connect and close dozens of
#: times a run) only show with -v.
_CHATTY = ("distributed", "bokeh", "tornado", "fsspec", "urllib3", "filelock")


def _setup_logging(verbose: int, quiet: bool) -> None:
    level = logging.WARNING if quiet else logging.DEBUG if verbose > 1 else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", force=True)
    for name in _CHATTY:
        logging.getLogger(name).setLevel(level if verbose else max(level, logging.WARNING))
    if not verbose:  # dask sets its loggers' levels from its config when it is imported (later, in a command)
        os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="diffprobe")
@click.option("-v", "--verbose", count=True, help="Tracebacks of errors too (-vv: debug log output).")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="CPU threads per pool [default: the cores available to this process].")
@click.option("--busy-wait", is_flag=True, help="Let idle OpenMP threads spin (faster only on an otherwise idle machine).")
def main(verbose: int, quiet: bool, threads: int | None, busy_wait: bool) -> None:
    """Cache diffusion U-Net features once; probe and compare them many times."""
    from diffprobe.threads import ThreadPolicy

    _setup_logging(verbose, quiet)
    ThreadPolicy.default(threads, busy_wait).apply()


for _command in (models, blocks, extract, store_group, probe_group, sweep, cka_group, demo):
    main.add_command(_command)
