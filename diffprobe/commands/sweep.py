"""``diffprobe sweep``: one probe per (t, block, pool) key of a store."""

from __future__ import annotations

import json
from typing import Any

import click

from diffprobe.commands.options import flatten, overwrite_option
from diffprobe.commands.probe import data_config, data_options, key_options, probe_params
from diffprobe.probes.registry import PROBES


@click.command("sweep")
@click.argument("store", type=click.Path(exists=True))
@click.option("--probe", "probe_name", type=click.Choice(PROBES.names()), default="logistic", show_default=True)
@key_options("all")
@click.option("--no-joint", is_flag=True, help="Linear probe: fit keys one by one instead of all heads in one pass.")
@data_options
@click.option("--out", type=click.Path(file_okay=False), default="sweep", show_default=True,
              help="Folder for results.csv, results.json, best.json and the plots.")
@overwrite_option("the --out folder")
def sweep(store: str, probe_name: str, timesteps: tuple, blocks: tuple, pools: tuple, keys: tuple[str, ...],
          no_joint: bool, out: str, overwrite: bool, **o: Any) -> None:  # fmt: skip
    """Fit one probe per (t, block, pool) key of STORE (every key, or those --t/--blocks/--pool keep);
    write a tidy table, the best keys and plots. An existing non-empty --out is refused unless --overwrite."""
    from diffprobe.outputs import claim_output
    from diffprobe.pipelines.sweep.run import SweepConfig, run_sweep
    from diffprobe.store import open_store

    cfg = SweepConfig(probe_name, probe_params(o), flatten(timesteps), flatten(blocks), flatten(pools), keys, data_config(o), not no_joint)
    claim_output(out, overwrite=overwrite)  # before anything is computed, and before a dry run says all is well
    if o["dry_run"]:
        click.echo(json.dumps({**cfg.to_dict(), "out": out}, indent=1, default=str))
        return
    with open_store(store) as s:
        res = run_sweep(s, cfg, out, overwrite=overwrite)
    click.echo("\n".join(res.lines()))
