"""``diffprobe demo``."""

from __future__ import annotations

import click

from diffprobe.commands.options import device_option, progress_option


@click.command()
@click.option("--out", "-o", default="diffprobe-demo", show_default=True, type=click.Path(file_okay=False), help="Output folder.")
@device_option()
@progress_option()
def demo(out: str, device: str, progress: bool | None) -> None:
    """Run the main job on the bundled real model and Fashion-MNIST images (a minute or two on CPU).

    Extracts features of 1,500 Fashion-MNIST images (1,000 train, 500 val) from the bundled ADM
    model at t = 50 and 150, blocks 7, 10 (middle) and 13, pooled 1×1 and 2×2, into OUT/features.zarr
    (and every block at t = 90 on val); fits a logistic probe per key and a raw-pixel baseline
    (OUT/probes/: table, best keys, plots); writes the blocks × blocks CKA heatmap (OUT/cka/).
    Re-running reuses the finished store.
    """
    from diffprobe.pipelines.demo import run_demo

    for line in run_demo(out, device=device, progress=progress).lines():
        click.echo(line)
