"""``diffprobe models`` and ``diffprobe blocks MODEL``."""

from __future__ import annotations

import json

import click

from diffprobe.commands.options import json_option, model_options


@click.command()
@click.argument("model")
@model_options
@json_option("Print JSON instead of a table.")
def blocks(model: str, checkpoint: str | None, flags: str, class_label: int | None, as_json: bool) -> None:
    """Print every block of MODEL: paper number, module path, channels and resolution.

    MODEL is a preset (see `diffprobe models`) or `adm` with --flags. Without --checkpoint the table
    is measured on the meta device, so even the 256 model needs no memory.
    """
    from diffprobe.extract.adm_config import load_flags
    from diffprobe.extract.registry import block_table

    infos, config = block_table(model, load_flags(flags), checkpoint, class_label)
    if as_json:
        payload = {"model": model, "flags": config.to_flags(), "blocks": [b.to_dict() for b in infos]}
        click.echo(json.dumps(payload, indent=1))
        return
    click.echo(f"{model}: {len(infos)} blocks ({config.image_size}×{config.image_size} input)")
    click.echo(f"{'block':>5}  {'module path':<18} {'stage':<7} {'channels':>8}  resolution")
    for b in infos:
        click.echo(f"{b.number:>5}  {b.path:<18} {b.stage:<7} {b.channels:>8}  {b.height}×{b.width}")


@click.command()
def models() -> None:
    """List the model presets and their published checkpoints."""
    from diffprobe.extract.presets import PRESETS

    for p in PRESETS.values():
        click.echo(f"{p.name:<16} {p.description}  [{p.checkpoint_file}]")
        if p.url:
            click.echo(f"{'':<16} download: {p.url}")
    click.echo(f"{'adm':<16} any other ADM checkpoint, described with --flags")
