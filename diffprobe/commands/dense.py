"""``diffprobe probe dense``: a segmentation head trained on a store's feature maps and masks."""

from __future__ import annotations

import json
from typing import Any

import click

from diffprobe.commands.options import claim_outputs, json_option, max_memory_option, overwrite_option
from diffprobe.commands.probe_options import (
    data_config,
    hyper_options,
    hyper_params,
    run_options,
    selection_of,
    selection_options,
    split_options,
)
from diffprobe.probes.dense.estimator import DenseProbe


@click.command("dense")
@click.argument("store", type=click.Path(exists=True))
@selection_options("the only one stored; --pools full")
@click.option("--pixels", is_flag=True, help="The baseline: a per-pixel probe on the raw RGB pixels instead of stored features.")
@split_options
@hyper_options(DenseProbe)
@max_memory_option("512MiB", "Items held in memory at once while streaming from the store (a window of consecutive items).")
@run_options
@click.option("--grid", type=click.Path(dir_okay=False), default=None, help="Write a PNG of 8 eval items: image, truth, prediction, with a legend.")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Write the result (metrics, per-class IoU, confusion) as JSON.")
@click.option("--sweep", type=click.Path(file_okay=False), default=None,
              help="One probe per selected key (every stored map by default) and one on the raw pixels: results.csv, best.json and mIoU plots in this folder.")
@overwrite_option("the --out, --grid and --sweep outputs")
@json_option("Print the full result as JSON.")
def dense(store: str, pixels: bool, grid: str | None, out: str | None, sweep: str | None, overwrite: bool, as_json: bool, **o: Any) -> None:
    """Train a dense (per-pixel) probe on STORE's feature maps and masks; report mIoU, per-class IoU
    and pixel accuracy on the eval split. The store must come from data with masks. Its hyper-parameters
    are the options after the split options (head, members, epochs, lr, …)."""
    from diffprobe.device import resolve_device
    from diffprobe.probes.dense.run import dense_probe
    from diffprobe.probes.dense.source import PIXELS
    from diffprobe.probes.report import summary_lines
    from diffprobe.probes.result import ProbeConfig
    from diffprobe.store import open_store
    from diffprobe.store.select import resolve_selection

    memory = int(o.pop("max_memory"))
    selection, data, params = selection_of(o), data_config(o), hyper_params(o)
    if selection.pools == ():
        selection = type(selection)(selection.t, selection.blocks, (None,), selection.names)
    params.update(device=str(resolve_device(o.pop("device"))), max_memory=memory)
    claim_outputs({"--out": out, "--grid": grid, "--sweep": sweep}, overwrite)
    with open_store(store) as s:
        if sweep:
            from diffprobe.pipelines.sweep.run import SweepConfig, run_sweep

            sweep_cfg = SweepConfig("dense", params, selection, data, pixels=True)
            if o["dry_run"]:
                click.echo(json.dumps({**sweep_cfg.to_dict(), "out": sweep}, indent=1, default=str))
                return
            click.echo("\n".join(run_sweep(s, sweep_cfg, sweep, overwrite=overwrite).lines()))
            return
        train_split = data.train_split or ("train" if "train" in s.splits else s.splits[0])
        names = (PIXELS,) if pixels else tuple(k.name for k in resolve_selection(s, train_split, selection))
        cfg = ProbeConfig("dense", names, params, data)
        if o["dry_run"]:
            click.echo(json.dumps(cfg.to_dict(), indent=1, default=str))
            return
        res = dense_probe(s, cfg, grid=grid)
    if out:
        res.save_json(out, overwrite=overwrite)
    click.echo(json.dumps(res.to_dict(), indent=1, default=str) if as_json else "\n".join(summary_lines(res)))
    if grid:
        click.echo(f"wrote {grid}")
