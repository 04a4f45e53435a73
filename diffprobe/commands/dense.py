"""``diffprobe probe dense``: a segmentation head trained on a store's feature maps and masks."""

from __future__ import annotations

import json

import click

from diffprobe.commands.options import (
    blocks_option,
    claim_outputs,
    device_option,
    flatten,
    max_memory_option,
    overwrite_option,
    pools_option,
    timesteps_option,
)


@click.command("dense")
@click.argument("store", type=click.Path(exists=True))
@timesteps_option("Timesteps, e.g. 90 or 50,150 (concatenated) [default: the only one stored].")
@blocks_option("Blocks, e.g. 12 or 8,12,16 (concatenated per pixel) [default: the only one stored].", aliases=("--block",))
@pools_option("Map size: 'full' (the native map) or a pool p > 1 [default: full].", default=("full",), show_default=False)
@click.option("--pixels", is_flag=True, help="The baseline: a per-pixel probe on the raw RGB pixels instead of stored features.")
@click.option("--head", type=click.Choice(["linear", "mlp", "upernet"]), default="linear", show_default=True,
              help="linear: BatchNorm + 1×1 conv over the upsampled maps (the linear-segmentation protocol); "
                   "mlp: ddpm-segmentation's per-pixel MLP (an ensemble with --members); upernet: the paper's UperNet head.")  # fmt: skip
@click.option("--members", type=click.IntRange(min=1), default=1, show_default=True, help="--head mlp: MLPs in the ensemble (ddpm-segmentation: 10).")
@click.option("--grid", type=click.Path(dir_okay=False), default=None, help="Write a PNG of 8 eval items: image, truth, prediction.")
@click.option("--epochs", type=click.IntRange(min=1), default=30, show_default=True)
@click.option("--lr", type=float, default=1e-2, show_default=True, help="Learning rate (the schedule's start).")
@click.option("--weight-decay", type=float, default=1e-4, show_default=True)
@click.option("--optimizer", type=click.Choice(["adamw", "sgd"]), default="adamw", show_default=True, help="sgd: momentum 0.9.")
@click.option("--schedule", type=click.Choice(["cosine", "poly", "constant"]), default="cosine", show_default=True,
              help="Learning-rate schedule over all steps (poly: power 0.9).")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True, help="Items per step.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--train-split", default="train", show_default=True)
@click.option("--eval-split", default="val", show_default=True)
@device_option("cpu", "cpu, cuda, cuda:K or auto.")
@max_memory_option("512MiB", "Items held in memory at once while streaming from the store (a window of consecutive items).")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Write the result (metrics, per-class IoU, confusion) as JSON.")
@click.option("--sweep", type=click.Path(file_okay=False), default=None,
              help="One probe per selected key (all stored maps by default) and one on the raw pixels: results.csv, best.json and mIoU plots in this folder.")
@overwrite_option("--out")
def dense(store: str, timesteps: tuple, blocks: tuple, pools: tuple, pixels: bool, head: str, members: int, grid: str | None, epochs: int, lr: float,
          weight_decay: float, optimizer: str, schedule: str, batch_size: int, seed: int, train_split: str, eval_split: str, device: str, max_memory: int, out: str | None, sweep: str | None,
          overwrite: bool) -> None:  # fmt: skip
    """Train a dense (per-pixel) probe on STORE's feature maps and masks; report mIoU, per-class IoU
    and pixel accuracy on the eval split. The store must come from data with masks."""
    from diffprobe.device import resolve_device
    from diffprobe.probes.data import resolve_keys
    from diffprobe.probes.dense.run import dense_probe
    from diffprobe.probes.dense.source import PIXELS
    from diffprobe.probes.optim import TrainConfig
    from diffprobe.store import open_store

    claim_outputs({"--out": out, "--grid": grid, "--sweep": sweep}, overwrite)
    with open_store(store) as s:
        if pixels:
            names = [PIXELS]
        elif sweep and not (flatten(timesteps) or flatten(blocks)):  # a sweep: every stored map at the pool asked for
            names = [k.name for k in s.feature_keys(train_split) if k.pool in flatten(pools)]
        else:
            names = [k.name for k in resolve_keys(s, train_split, flatten(timesteps), flatten(blocks), flatten(pools), ())]
        cfg = TrainConfig(optimizer=optimizer, lr=lr, momentum=0.9, weight_decay=weight_decay, epochs=epochs, batch_size=batch_size,
                          schedule=schedule, device=str(resolve_device(device)), seed=seed)
        if sweep:
            from diffprobe.pipelines.sweep.dense import dense_sweep

            maps = [n for n in names if len(s.array_info(train_split, n)[0]) == 4 and s.array_info(train_split, n)[0][-1] > 1]
            done = dense_sweep(s, maps, sweep, overwrite=overwrite, head=head, train_split=train_split, eval_split=eval_split,
                               training=cfg, members=members, max_memory=int(max_memory))  # fmt: skip
            for r in done["rows"]:
                click.echo(f"{r['key']:<18} mIoU {100 * r['miou']:6.2f}%  pixel accuracy {100 * r['pixel_accuracy']:6.2f}%")
            click.echo(f"{'raw pixels':<18} mIoU {100 * done['pixels']['metrics']['miou']:6.2f}%")
            click.echo(f"best: {done['best']['key']}; wrote {', '.join(done['files'].values())}")
            return
        res = dense_probe(s, names, head=head, train_split=train_split, eval_split=eval_split, training=cfg, members=members, grid=grid, max_memory=int(max_memory))
    m = res["metrics"]
    what = f"{head} ×{members}" if head == "mlp" and members > 1 else head
    click.echo(f"dense {what} probe on {' + '.join(names)}: train {train_split} ({res['train']['items']}) → eval {eval_split} "
               f"({res['eval']['items']})")  # fmt: skip
    click.echo(f"mIoU {100 * m['miou']:.2f}%  pixel accuracy {100 * m['pixel_accuracy']:.2f}%  ({res['seconds']:.1f} s)")
    click.echo("IoU per class: " + ", ".join(f"{k} {100 * v:.1f}%" for k, v in m["iou"].items() if v is not None))
    if grid:
        click.echo(f"wrote {grid}")
    if out:
        with open(out, "w") as f:
            json.dump(res, f, indent=1)
