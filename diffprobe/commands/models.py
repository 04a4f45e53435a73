"""``diffprobe models`` and ``diffprobe blocks MODEL``."""

from __future__ import annotations

import json

import click

from diffprobe.commands.options import json_option, model_options


@click.command()
@click.argument("name", metavar="[MODEL]", required=False)
@click.option("--model", "-m", "model", default=None, help="The model, as for `extract` (or give it as MODEL).")
@model_options
@json_option("Print JSON instead of a table.")
def blocks(name: str | None, model: str | None, checkpoint: str | None, flags: str, class_label: int | None, as_json: bool) -> None:
    """Print every block of the model (MODEL or --model): number, module path, stage, channels and resolution.

    The model is a preset (see `diffprobe models`), `adm` with --flags, or `diffusers` with --checkpoint
    DIR. The table is measured on the meta device, so even the largest model needs no memory; an ADM
    --checkpoint is also checked against the architecture.
    """
    if (name is None) == (model is None):
        raise click.UsageError("name the model once: `diffprobe blocks MODEL` or `diffprobe blocks --model MODEL`")
    model = str(model or name)
    from diffprobe.extract.registry import block_table, check_model
    from diffprobe.extract.spec import Conditioning
    from diffprobe.keyvalue import load_pairs

    flag_map = load_pairs(flags)
    if checkpoint is not None:
        check_model(model, flag_map, checkpoint, False, Conditioning(class_label))
    infos, spec = block_table(model, flag_map, checkpoint)
    if as_json:
        described = {"flags": spec.config.to_flags()} if spec.family == "adm" else {k: v for k, v in spec.identity.items() if k != "family"}
        payload = {"model": model, "family": spec.family, "image_size": spec.image_size, "noise_shape": list(spec.noise_shape),
                   "steps": spec.steps, **described, "blocks": [b.to_dict() for b in infos]}  # fmt: skip
        click.echo(json.dumps(payload, indent=1))
        return
    c, h, w = spec.noise_shape
    if not spec.noised:  # an image model
        crop = f", centre {h}×{w} crop" if h != spec.image_size else ""
        how = f"{spec.image_size}×{spec.image_size} input{crop}; no noise: features of the clean image, stored as t = 0"
    else:
        latent = f", noised as {c}×{h}×{w} latents" if (h, w) != (spec.image_size, spec.image_size) else ""
        how = f"{spec.image_size}×{spec.image_size} input{latent}; t in 0..{spec.steps - 1}"
        if spec.identity.get("process") == "rectified-flow":  # t is σ·T before the shift
            how += f" = σ·{spec.steps} (rectified flow, shift {spec.identity['shift']:.4g})"
    click.echo(f"{model} ({spec.family}): {len(infos)} blocks ({how})")
    width = max(18, *(len(b.path) for b in infos))
    click.echo(f"{'block':>5}  {'module path':<{width}} {'stage':<11} {'channels':>8}  resolution")
    for b in infos:
        click.echo(f"{b.number:>5}  {b.path:<{width}} {b.stage:<11} {b.channels:>8}  {b.height}×{b.width}")


@click.command()
def models() -> None:
    """List the model presets, their families and where their weights come from."""
    from diffprobe.extract.registry import PRESETS

    width = max(len(n) for n in PRESETS) + 2
    for p in PRESETS.values():
        click.echo(f"{p.name:<{width}} [{p.family}] {p.description}")
        where = f"hf download {p.hub} --local-dir {p.hub.split('/')[-1]}; then --checkpoint {p.hub.split('/')[-1]}" if p.hub else \
            ("bundled" if p.bundled else f"download: {p.url}" if p.url else p.checkpoint_file)
        click.echo(f"{'':<{width}} weights: {where}")
        if p.best:
            click.echo(f"{'':<{width}} best in the literature: {p.best}")
    click.echo(f"{'adm':<{width}} any other ADM checkpoint, described with --flags")
    kinds = "UNet2DModel, Stable Diffusion 1.x/2.x, SDXL, SD3/3.5, Flux.1, SANA, PixArt-α/Σ or DiT"
    click.echo(f"{'diffusers':<{width}} any {kinds} pipeline directory: --checkpoint DIR")
    click.echo(f"{'timm':<{width}} any timm image model: --flags arch=NAME --checkpoint FILE, or --checkpoint DIR with the hub's config.json")
