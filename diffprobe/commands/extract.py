"""``diffprobe extract``."""

from __future__ import annotations

import click

from diffprobe.cli import main, model_options
from diffprobe.commands.options import CommaList, flatten


@main.command()
@click.argument("data", type=click.Path(exists=True))
@click.option("--model", "-m", required=True, help="Model preset (see `diffprobe models`) or `adm` with --flags.")
@model_options
@click.option("--t", "timesteps", type=CommaList("int"), multiple=True, required=True, help="Timesteps, e.g. 90,150.")
@click.option("--blocks", type=CommaList("block"), multiple=True, required=True, help="Blocks: paper numbers or module paths, e.g. 19,24.")
@click.option("--pool", "pools", type=CommaList("pool"), multiple=True, default=("1",), show_default=True, help="Pool sizes p (p×p) or 'full'.")
@click.option("--out", "-o", required=True, type=click.Path(), help="Store: a directory (Zarr) or a .h5 file (HDF5).")
@click.option("--draws", type=click.IntRange(min=1), default=1, show_default=True, help="Noise draws K per (image, t).")
@click.option("--reduce", type=click.Choice(["mean", "none"]), default="mean", show_default=True, help="Average the K draws, or keep them.")
@click.option("--seed", type=int, default=0, show_default=True, help="Noise seed.")
@click.option("--dtype", type=click.Choice(["float16", "float32"]), default="float16", show_default=True, help="Storage dtype.")
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16", "fp16"]), default="auto", show_default=True, help="Compute precision (auto: bf16 on GPU, fp32 on CPU, or the existing store's).")
@click.option("--batch-size", "-b", type=click.IntRange(min=1), default=64, show_default=True, help="Images decoded per step.")
@click.option("--forward-batch", type=click.IntRange(min=1), default=None, help="Images per U-Net forward (default 16 on CPU, 64 on GPU, or the existing store's); fixed so bytes never depend on batching.")
@click.option("--fuse-timesteps", type=click.IntRange(min=1), default=None, help="(t, draw) passes stacked into one forward (default: 1 on CPU; on GPU enough to fill the chip for small models; or the existing store's).")
@click.option("--compile", "compile_", is_flag=True, help="Run the forward through torch.compile (falls back to eager if unavailable).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1 …")
@click.option("--loader-workers", type=click.IntRange(min=0), default=None, help="Image decoding processes (default: automatic).")
@click.option("--unit-size", type=click.IntRange(min=1), default=None, help="Items per work unit (= per shard); default: automatic.")
@click.option("--splits", type=CommaList("str"), multiple=True, help="Only these splits (default: all).")
@click.option("--strict", is_flag=True, help="Stop at the first image that cannot be decoded.")
@click.option("--overwrite", is_flag=True, help="Replace an existing store made with another configuration.")
@click.option("--workers", type=click.IntRange(min=0), default=0, show_default=True, help="Start a dask LocalCluster of N worker processes (one per GPU on CUDA).")
@click.option("--scheduler", default=None, help="Address of an existing dask scheduler (e.g. tcp://host:8786) to run the units on.")
@click.option("--shard", type=str, default=None, help="Run only shard i of n (i/n) of the units, without a scheduler; then `store finalize`.")
@click.option("--dry-run", is_flag=True, help="Print the resolved config, the arrays to create and the estimated size; write nothing.")
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: only on a terminal).")
def extract(data, model, checkpoint, flags, class_label, timesteps, blocks, pools, out, draws, reduce, seed, dtype,
            precision, batch_size, fuse_timesteps, forward_batch, compile_, device, loader_workers, unit_size, splits, strict, overwrite, workers, scheduler, shard, dry_run, progress) -> None:  # fmt: skip
    """Extract U-Net features of the images in DATA into a store.

    DATA is an ImageFolder tree (class = parent folder; optional train/ val/ … split folders) or a
    CSV/TSV manifest with columns path,label[,split]. Re-running resumes; new --t/--blocks/--pool
    values on an existing store compute only the new arrays.
    """
    import json

    from diffprobe.extract.adm_config import load_flags
    from diffprobe.extract.config import ExtractConfig
    from diffprobe.pipelines.extract_job import extract as run

    cfg = ExtractConfig(
        data=data, out=out, model=model, checkpoint=checkpoint, flags=tuple(load_flags(flags).items()),
        class_label=class_label, timesteps=flatten(timesteps), blocks=flatten(blocks), pools=flatten(pools),
        draws=draws, reduce=reduce, seed=seed, dtype=dtype, precision=precision, batch_size=batch_size, forward_batch=forward_batch, fuse_timesteps=fuse_timesteps, compile=compile_,
        device=device, loader_workers=loader_workers, unit_size=unit_size, splits=flatten(splits),
        strict=strict, overwrite=overwrite, workers=workers, scheduler=scheduler, shard=_parse_shard(shard),
    )  # fmt: skip
    if dry_run:
        click.echo(json.dumps(cfg.to_dict(), indent=1))
    summary = run(cfg, dry_run=dry_run, progress=progress)
    for line in summary.lines():
        click.echo(line)


def _parse_shard(value: str | None) -> tuple[int, int] | None:
    if value is None:
        return None
    try:
        i, n = (int(v) for v in value.split("/"))
    except ValueError:
        raise click.BadParameter(f"expected i/n such as 0/4, got {value!r}", param_hint="--shard") from None
    if not (n >= 1 and 0 <= i < n):
        raise click.BadParameter(f"need 0 <= i < n, got {value!r}", param_hint="--shard")
    return i, n
