"""``diffprobe demo``."""

from __future__ import annotations

from pathlib import Path

import click

from diffprobe.cli import main


@main.command()
@click.option("--out", "-o", default="diffprobe-demo", show_default=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda …")
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: only on a terminal).")
def demo(out: str, device: str, progress: bool | None) -> None:
    """Run the main job on the bundled real model and Fashion-MNIST images (a minute or two on CPU).

    Extracts features of 1,500 Fashion-MNIST images (1,000 train, 500 val) from the bundled ADM
    model at t = 50 and 150, blocks 7, 10 (middle) and 13, pooled 1×1 and 2×2, into OUT/features.zarr
    (and every block at t = 90 on val); fits a logistic probe per key and a raw-pixel baseline
    (OUT/probes/: table, best keys, plots); writes the blocks × blocks CKA heatmap (OUT/cka/).
    Re-running reuses the finished store.
    """
    from diffprobe.pipelines.demo import run_demo

    res = run_demo(out, device=device, progress=progress)
    for line in res.extraction.lines():
        click.echo(line)
    click.echo(f"stored in {res.store}:")
    for line in res.stored:
        click.echo(f"  {line}")
    pr = res.extras["probes"]
    best, pix = pr["best"], pr["pixels"]
    click.echo(f"logistic probes on {pr['keys']} keys (train → val):")
    for row in sorted(pr["rows"], key=lambda r: -r["top1"])[:5]:
        click.echo(f"  {row['key']:<14} top-1 {row['top1']:.1%}")
    click.echo(f"best: {best['key']} (t={best['t']}, block {best['block']}, pool {best['pool']}) top-1 {best['top1']:.1%} "
               f"vs raw pixels {pix['top1']:.1%} ({pr['gain'] * 100:+.1f} points)")  # fmt: skip
    click.echo(f"plots and tables: {Path(out) / 'probes'}")
    click.echo(f"CKA heatmap (every block at t=90, val): {res.extras['cka_png']}")
