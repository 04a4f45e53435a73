"""`diffprobe cka blocks|timesteps|stores`: CKA matrices between stored arrays → CSV, JSON, heatmap."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from diffprobe.cli import main
from diffprobe.commands.options import stack_options
from diffprobe.errors import ConfigError
from diffprobe.pipelines.cka_config import ESTIMATOR_NAMES, KERNEL_NAMES, METHOD_NAMES


def parse_pool(text: str) -> int | None:
    """``"full"`` → None (the full map), else a pool size ≥ 1."""
    if text.strip().lower() == "full":
        return None
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigError(f"expected --pool to be a size ≥ 1 or 'full', got {text!r}")
    return value


def parse_ints(text: str | None, flag: str) -> list[int] | None:
    """``"19,24,30"`` or ``"1-5,10"`` → [19, 24, 30] / [1, 2, 3, 4, 5, 10]; None stays None."""
    if text is None:
        return None
    out: list[int] = []
    try:
        for part in (p.strip() for p in text.split(",") if p.strip()):
            lo, _, hi = part.partition("-")
            out += list(range(int(lo), int(hi) + 1)) if hi else [int(lo)]
    except ValueError:
        raise ConfigError(f"expected {flag} as numbers and ranges like 19,24,30 or 1-5, got {text!r}") from None
    return out


def cka_options(f: Any) -> Any:
    """Options shared by every `cka` subcommand (they build a CKAConfig)."""
    opts = [
        click.option("--kernel", type=click.Choice(KERNEL_NAMES), default="linear", show_default=True),
        click.option("--estimator", type=click.Choice(ESTIMATOR_NAMES), default="biased", show_default=True,
                     help="HSIC estimator; minibatch = unbiased HSIC summed over minibatches (any N, any kernel)."),
        click.option("--batch-size", type=click.IntRange(min=4), default=1024, show_default=True, help="Minibatch size."),
        click.option("--rbf-fraction", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True,
                     help="RBF bandwidth as a fraction of the median pairwise distance."),
        click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:K or auto (no GPU → CPU)."),
        click.option("--max-memory", default="2GiB", show_default=True, help="Memory the computation may hold (approximate)."),
        click.option("--method", type=click.Choice(METHOD_NAMES), default="auto", show_default=True,
                     help="Exact estimators: streamed feature space (linear) or in-memory N×N Grams."),
        click.option("--seed", type=int, default=0, show_default=True, help="Seed of the minibatch permutation."),
        click.option("--out", "out", type=click.Path(file_okay=False), default=None,
                     help="Output folder for cka.csv, cka.json, cka.png [default: ./cka-<command>]."),
        click.option("--dry-run", is_flag=True, help="Print the resolved settings and stop."),
    ]
    return stack_options(f, opts)


def _config(opts: dict[str, Any]) -> Any:
    from diffprobe.pipelines.cka_config import CKAConfig, parse_size

    return CKAConfig(
        kernel=opts["kernel"], estimator=opts["estimator"], batch_size=opts["batch_size"], rbf_fraction=opts["rbf_fraction"],
        device=opts["device"], max_memory=parse_size(opts["max_memory"]), method=opts["method"], seed=opts["seed"],
    )


def _run(command: str, opts: dict[str, Any], selection: dict[str, Any], compute: Any) -> None:
    cfg = _config(opts)
    out = Path(opts["out"] or f"cka-{command}")
    if opts["dry_run"]:
        resolved = {"command": f"cka {command}", "selection": selection, "config": cfg.to_dict(), "out": str(out)}
        click.echo(json.dumps(resolved, indent=1))
        return
    from diffprobe.pipelines.cka import write_outputs

    result = compute(cfg)
    paths = write_outputs(result, out)
    m = result.matrix
    click.echo(
        f"CKA {len(m.row_labels)}×{len(m.col_labels)} over {m.n_items} items "
        f"({cfg.kernel}, {cfg.estimator}; {m.facts.get('method')} on {m.facts.get('device')}, {m.facts.get('seconds')} s)"
    )
    click.echo(f"wrote {paths['csv']}, {paths['json']}, {paths['png']}")


@main.group("cka")
def cka_group() -> None:
    """Centred kernel alignment between blocks, timesteps or two stores (CSV + JSON + heatmap)."""


@cka_group.command("blocks")
@click.argument("store", type=click.Path(exists=True))
@click.option("--split", default=None, help="Split to use [default: the store's only split].")
@click.option("--t", "t", type=click.IntRange(min=0), default=None, help="Timestep [default: the only one stored].")
@click.option("--pool", default="1", show_default=True, help="Pool size p, or 'full' for the full map.")
@click.option("--blocks", default=None, help="Blocks to compare, e.g. 19,24,30 or 1-10 [default: all stored].")
@cka_options
def blocks_cmd(store: str, split: str | None, t: int | None, pool: str, blocks: str | None, **opts: Any) -> None:
    """CKA between every pair of U-Net blocks of STORE at one timestep (the encoder/decoder X-shape)."""
    p, bl = parse_pool(pool), parse_ints(blocks, "--blocks")

    def compute(cfg: Any) -> Any:
        from diffprobe.pipelines.cka import cka_blocks

        return cka_blocks(store, split=split, t=t, pool=p, blocks=bl, config=cfg)

    _run("blocks", opts, {"store": store, "split": split, "t": t, "pool": p, "blocks": bl}, compute)


@cka_group.command("timesteps")
@click.argument("store", type=click.Path(exists=True))
@click.option("--block", type=click.IntRange(min=1), default=None, help="Block [default: the only one stored].")
@click.option("--split", default=None, help="Split to use [default: the store's only split].")
@click.option("--pool", default="1", show_default=True, help="Pool size p, or 'full' for the full map.")
@click.option("--timesteps", default=None, help="Timesteps to compare, e.g. 10,90,150 [default: all stored].")
@cka_options
def timesteps_cmd(store: str, block: int | None, split: str | None, pool: str, timesteps: str | None, **opts: Any) -> None:
    """CKA between every pair of timesteps of one block of STORE."""
    p, ts = parse_pool(pool), parse_ints(timesteps, "--timesteps")

    def compute(cfg: Any) -> Any:
        from diffprobe.pipelines.cka import cka_timesteps

        return cka_timesteps(store, block=block, split=split, pool=p, timesteps=ts, config=cfg)

    _run("timesteps", opts, {"store": store, "split": split, "block": block, "pool": p, "timesteps": ts}, compute)


@cka_group.command("stores")
@click.argument("store_a", type=click.Path(exists=True))
@click.argument("store_b", type=click.Path(exists=True))
@click.option("--split", default=None, help="Split to use [default: the only split both stores hold].")
@click.option("--keys-a", multiple=True, help="Array names of A to use; shell patterns like 't0090_*_p1' (repeatable).")
@click.option("--keys-b", multiple=True, help="Array names of B to use (repeatable) [default: all].")
@cka_options
def stores_cmd(
    store_a: str, store_b: str, split: str | None, keys_a: tuple[str, ...], keys_b: tuple[str, ...], **opts: Any
) -> None:
    """CKA of every array of STORE_A against every array of STORE_B, items matched by id."""

    def compute(cfg: Any) -> Any:
        from diffprobe.pipelines.cka import cka_stores

        return cka_stores(store_a, store_b, split=split, keys_a=keys_a or None, keys_b=keys_b or None, config=cfg)

    sel = {"store_a": store_a, "store_b": store_b, "split": split, "keys_a": list(keys_a), "keys_b": list(keys_b)}
    _run("stores", opts, sel, compute)
