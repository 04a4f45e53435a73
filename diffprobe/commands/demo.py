"""``diffprobe demo``."""

from __future__ import annotations

import click

from diffprobe.cli import main


@main.command()
@click.option("--out", "-o", default="diffprobe-demo", show_default=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda …")
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: only on a terminal).")
def demo(out: str, device: str, progress: bool | None) -> None:
    """Run the main job on the bundled real model and Fashion-MNIST images (about a minute on CPU).

    Extracts features of 1,500 Fashion-MNIST images (1,000 train, 500 val) from the bundled ADM
    model at t = 50 and 150, blocks 7, 10 (middle) and 13, pooled 1×1 and 2×2, into OUT/features.zarr,
    and prints what it stored. Re-running reuses the finished store.
    """
    from diffprobe.pipelines.demo import run_demo

    res = run_demo(out, device=device, progress=progress)
    for line in res.extraction.lines():
        click.echo(line)
    click.echo(f"stored in {res.store}:")
    for line in res.stored:
        click.echo(f"  {line}")
