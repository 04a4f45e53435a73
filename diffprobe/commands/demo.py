"""``diffprobe demo``."""

from __future__ import annotations

import click

from diffprobe.commands.options import device_option, progress_option


@click.command()
@click.option("--out", "-o", default="diffprobe-demo", show_default=True, type=click.Path(file_okay=False), help="Output folder.")
@device_option()
@progress_option()
@click.option("--quick", is_flag=True, help="The same job on 150 of the images (10 train, 5 val per class): under a minute, noisy numbers.")
def demo(out: str, device: str, progress: bool | None, quick: bool) -> None:
    """Run the main job on the bundled real model and Fashion-MNIST images (under two minutes on 2 CPU cores).

    Extracts features of 1,500 Fashion-MNIST images (1,000 train, 500 val) from the bundled ADM
    model into OUT/features.zarr, on a grid shaped like the paper's ablations: every block (1-19;
    10 is the middle block) at t = 90, and t = 10, 90, 300, 500 at block 12, pooled 1×1 and 2×2.
    Fits a logistic probe per key and a raw-pixel baseline (OUT/probes/: table, best keys, and the
    accuracy vs block, t and pool plots with the baseline drawn in); writes the blocks × blocks CKA
    heatmap at t = 90 (OUT/cka/).

    OUT belongs to the demo: re-running reuses its finished store and regenerates probes/ and cka/.
    """
    from diffprobe.pipelines.demo import run_demo

    for line in run_demo(out, device=device, progress=progress, quick=quick).lines():
        click.echo(line)
