"""The ``diffprobe`` command line: thin click commands that build configs and call the library.

Heavy imports (torch, zarr …) happen inside commands so that ``--help`` is instant.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import click

from diffprobe._version import __version__
from diffprobe.errors import DiffprobeError


class _Group(click.Group):
    """A click group that turns library errors into clean CLI errors (no traceback)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DiffprobeError as e:
            raise click.ClickException(str(e)) from e


def _setup_logging(verbose: int, quiet: bool) -> None:
    level = logging.WARNING if quiet else logging.DEBUG if verbose > 1 else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", force=True)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="diffprobe")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors.")
def main(verbose: int, quiet: bool) -> None:
    """Cache diffusion U-Net features once; probe and compare them many times."""
    _setup_logging(verbose, quiet)


def model_options(f: Any) -> Any:
    """--checkpoint, --flags and --class-label, shared by every command that builds a model."""
    f = click.option(
        "--class-label",
        type=click.IntRange(min=0),
        default=None,
        help="Class fed to a class-conditional model for every image (never the true labels).",
    )(f)
    f = click.option(
        "--flags",
        "flags",
        default="",
        help="guided-diffusion flags overriding the preset: 'image_size=64,channel_mult=1,2,2' or a .toml/.json file.",
    )(f)
    f = click.option(
        "--checkpoint", type=click.Path(dir_okay=False), default=None, help="State-dict file (.pt); default: random weights."
    )(f)
    return f


@main.command()
@click.argument("model")
@model_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def blocks(model: str, checkpoint: str | None, flags: str, class_label: int | None, as_json: bool) -> None:
    """Print every block of MODEL: paper number, module path, channels and resolution.

    MODEL is a preset (see `diffprobe models`) or `adm` with --flags. Without --checkpoint the table
    is measured on the meta device, so even the 256 model needs no memory.
    """
    from diffprobe.extract.adm_config import load_flags
    from diffprobe.extract.blocks import measure_blocks
    from diffprobe.extract.registry import load_backbone, resolve_config

    flag_map = load_flags(flags)
    if checkpoint is not None:
        bb = load_backbone(model, checkpoint, class_label=class_label, **flag_map)
        infos, config = bb.blocks, bb.config
    else:
        _, config = resolve_config(model, flag_map)
        infos = list(measure_blocks(config))
    if as_json:
        payload = {"model": model, "flags": config.to_flags(), "blocks": [b.to_dict() for b in infos]}
        click.echo(json.dumps(payload, indent=1))
        return
    click.echo(f"{model}: {len(infos)} blocks ({config.image_size}×{config.image_size} input)")
    click.echo(f"{'block':>5}  {'module path':<18} {'stage':<7} {'channels':>8}  resolution")
    for b in infos:
        click.echo(f"{b.number:>5}  {b.path:<18} {b.stage:<7} {b.channels:>8}  {b.height}×{b.width}")


@main.command()
def models() -> None:
    """List the model presets and their published checkpoints."""
    from diffprobe.extract.presets import PRESETS

    for p in PRESETS.values():
        click.echo(f"{p.name:<16} {p.description}  [{p.checkpoint_file}]")
    click.echo(f"{'adm':<16} any other ADM checkpoint, described with --flags")


# Register the commands of every area (each module adds itself to `main`).
from diffprobe import commands  # noqa: E402,F401
