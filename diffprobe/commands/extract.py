"""``diffprobe extract``."""

from __future__ import annotations

from typing import Any

import click

from diffprobe.commands.options import (
    CommaList,
    blocks_option,
    device_option,
    dry_run_option,
    flatten,
    model_options,
    pools_option,
    progress_option,
    prompt_options,
    timesteps_option,
)
from diffprobe.extract.config import NORM_KERNELS, PRECISIONS, REDUCTIONS, STORAGE_DTYPES


@click.command()
@click.argument("data")
@click.option("--model", "-m", required=True, help="Model preset (see `diffprobe models`), `adm` with --flags, `diffusers` with --checkpoint DIR, or `timm` with --flags arch=NAME.")
@model_options
@prompt_options
@click.option("--random-weights", is_flag=True, help="No checkpoint: a seeded random initialisation (tests and benchmarks only).")
@timesteps_option(help="Timesteps t, e.g. 90,150 (required for diffusion models; image models such as timm's have none: leave it out).")
@blocks_option(required=True)
@pools_option(default=("1",), show_default=True)
@click.option("--out", "-o", required=True, type=click.Path(), help="Store: a directory (Zarr) or a .h5 file (HDF5).")
@click.option("--draws", type=click.IntRange(min=1), default=1, show_default=True, help="Noise draws K per (image, t).")
@click.option("--reduce", type=click.Choice(REDUCTIONS), default="mean", show_default=True, help="Average the K draws, or keep them.")
@click.option("--views", type=click.IntRange(min=1), default=1, show_default=True,
              help="Views V per image: view 0 is the evaluation centre crop, views 1..V-1 augmented (--augment); V× the forwards and bytes.")
@click.option("--augment", default="paper", show_default=True,
              help="Augmentation of views 1..V-1: paper (guided-diffusion's random crop + flip), rrc (RandomResizedCrop + flip), flip, none.")
@click.option("--seed", type=int, default=0, show_default=True, help="Noise (and view) seed.")
@click.option("--dtype", type=click.Choice(STORAGE_DTYPES), default="float16", show_default=True, help="Storage dtype.")
@click.option("--precision", type=click.Choice(PRECISIONS), default="auto", show_default=True, help="Compute precision (auto: bf16 on GPU, fp32 on CPU, or the existing store's).")
@click.option("--batch-size", "-b", type=click.IntRange(min=1), default=64, show_default=True, help="Images decoded per step.")
@click.option("--forward-batch", type=click.IntRange(min=1), default=None, help="Images per model forward (default 16 on CPU, 64 on GPU, or the existing store's); fixed so bytes never depend on batching.")
@click.option("--fuse-timesteps", type=click.IntRange(min=1), default=None, help="(t, draw) passes stacked into one forward (default: 1 on CPU; on GPU enough to fill the chip for small models; or the existing store's).")
@click.option("--compile", "compile_", is_flag=True, help="Run the forward through torch.compile (falls back to eager if unavailable).")
@click.option("--cuda-graphs", is_flag=True, help="With --compile on CUDA: replay the compiled forward as CUDA graphs (same values, no launch overhead).")
@click.option("--channels-last", is_flag=True, help="Weights and activations in channels-last (NHWC) layout, as cuDNN's fastest convolutions want.")
@click.option("--norm-kernel", type=click.Choice(NORM_KERNELS.names()), default="torch", show_default=True,
              help="GroupNorm + scale-shift + SiLU: torch's ops, or one fused Triton kernel (ADM models on CUDA; needs triton).")
@device_option()
@click.option("--loader-workers", type=click.IntRange(min=0), default=None, help="Image decoding processes (default: automatic).")
@click.option("--unit-size", type=click.IntRange(min=1), default=None, help="Items per work unit (= per shard); default: automatic.")
@click.option("--splits", type=CommaList("str"), multiple=True, help="Only these splits (default: all).")
@click.option("--split-name", default=None, help="Tar shards / Parquet files: the split of every file [default: a split word in each file name, else train].")
@click.option("--label-field", default="label", show_default=True, help="Tar shards: the field of a sample's json member holding its label (when it has no cls member).")
@click.option("--image-column", default="image", show_default=True, help="Hugging Face datasets / Parquet: the image column.")
@click.option("--label-column", default="label", show_default=True, help="Hugging Face datasets / Parquet: the label column ('' for none).")
@click.option("--id-column", default=None, help="Hugging Face datasets / Parquet: the column of item ids [default: the row index, row-00000042].")
@click.option("--strict", is_flag=True, help="Stop at the first image that cannot be decoded.")
@click.option("--allow-nonfinite", is_flag=True, help="Extract even with weights that hold NaN or Inf (refused otherwise: every feature would be NaN).")
@click.option("--overwrite", is_flag=True, help="Replace an existing store made with another configuration.")
@click.option("--workers", type=click.IntRange(min=0), default=0, show_default=True, help="Start a dask LocalCluster of N worker processes (one per GPU on CUDA).")
@click.option("--scheduler", default=None, help="Address of an existing dask scheduler (e.g. tcp://host:8786) to run the units on.")
@click.option("--shard", type=str, default=None, help="Run only shard i of n (i/n) of the units, without a scheduler; then `store finalize`.")
@dry_run_option("Print the resolved config, the arrays to create and the estimated size; write nothing.")
@progress_option()
def extract(data: str, flags: str, timesteps: tuple, blocks: tuple, pools: tuple, splits: tuple, shard: str | None,
            compile_: bool, dry_run: bool, progress: bool | None, **options: Any) -> None:  # fmt: skip
    """Extract a model's block features of the images in DATA into a store.

    DATA is an ImageFolder tree (class = parent folder; optional train/ val/ … split folders), a
    CSV/TSV manifest with columns path,label[,split][,id], WebDataset tar shards (a .tar, a brace
    pattern such as 'shards/train-{000000..000146}.tar', a glob, several joined by '::', fsspec URLs,
    or a folder of tars), or a Hugging Face dataset on disk (a save_to_disk folder or .parquet files).
    Re-running resumes; new --t/--blocks/--pool values on an existing store compute only the new arrays.
    """
    import json

    from diffprobe.extract.config import ExtractConfig, parse_shard
    from diffprobe.extract.registry import default_timesteps
    from diffprobe.keyvalue import load_pairs
    from diffprobe.pipelines.extraction.job import extract_features

    flag_dict = load_pairs(flags)
    options["label_column"] = options["label_column"] or None  # '' = no labels
    ts = flatten(timesteps) or default_timesteps(options["model"], flag_dict, options.get("checkpoint"))
    cfg = ExtractConfig(
        data=data, flags=tuple(flag_dict.items()), timesteps=ts, blocks=flatten(blocks),
        pools=flatten(pools), splits=flatten(splits), shard=None if shard is None else parse_shard(shard),
        compile=compile_, **options,
    )  # fmt: skip
    if dry_run:
        click.echo(json.dumps(cfg.to_dict(), indent=1))
    summary = extract_features(cfg, dry_run=dry_run, progress=progress)
    for line in summary.lines():
        click.echo(line)
