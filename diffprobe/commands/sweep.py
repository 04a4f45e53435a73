"""``diffprobe sweep``: one probe per (t, block, pool) key of a store."""

from __future__ import annotations

import json
from typing import Any

import click

from diffprobe.commands.options import overwrite_option
from diffprobe.commands.probe_options import data_config, data_options, hyper_params, run_options, selection_of, selection_options
from diffprobe.probes.registry import DENSE_PROBES, PROBES


@click.command("sweep")
@click.argument("store", type=click.Path(exists=True))
@click.option("--probe", "probe_name", type=click.Choice([*PROBES.names(), *DENSE_PROBES.names()]), default="logistic", show_default=True)
@selection_options("all stored")
@click.option("--pixels", is_flag=True, help="Also run the probe on the raw pixels of the same items: the baseline row and line.")
@click.option("--no-joint", is_flag=True, help="Linear probe: fit keys one by one instead of all heads in one pass.")
@data_options
@click.option("-p", "--param", "params", multiple=True, metavar="NAME=VALUE",
              help="Probe hyper-parameter, repeatable (see `diffprobe probe NAME --help` for each probe's).")
@run_options
@click.option("--out", type=click.Path(file_okay=False), default="sweep", show_default=True,
              help="Folder for results.csv, results.json, best.json and the plots.")
@overwrite_option("the --out folder")
def sweep(store: str, probe_name: str, pixels: bool, no_joint: bool, out: str, overwrite: bool, **o: Any) -> None:
    """Fit one probe per (t, block, pool) key of STORE (every key, or those --t/--blocks/--pools keep);
    write a tidy table, the best keys (ties named) and plots. An existing non-empty --out is refused
    unless --overwrite."""
    from diffprobe.device import resolve_device
    from diffprobe.outputs import claim_output
    from diffprobe.pipelines.sweep.run import SweepConfig, run_sweep
    from diffprobe.store import open_store

    selection, data, params = selection_of(o), data_config(o), hyper_params(o)
    params["device"] = str(resolve_device(o.pop("device")))
    cfg = SweepConfig(probe_name, params, selection, data, not no_joint, pixels)
    claim_output(out, overwrite=overwrite)  # before anything is computed, and before a dry run says all is well
    if o["dry_run"]:
        click.echo(json.dumps({**cfg.to_dict(), "out": out}, indent=1, default=str))
        return
    with open_store(store) as s:
        res = run_sweep(s, cfg, out, overwrite=overwrite)
    click.echo("\n".join(res.lines()))
