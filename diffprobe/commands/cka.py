"""``diffprobe cka blocks|timesteps|stores``: CKA matrices between stored arrays → CSV, JSON, heatmap."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import click

from diffprobe.commands.options import (
    CommaList,
    Decorator,
    blocks_option,
    device_option,
    dry_run_option,
    flatten,
    max_memory_option,
    one,
    overwrite_option,
    pools_option,
    progress_option,
    stack_options,
    timesteps_option,
)
from diffprobe.pipelines.cka.config import ESTIMATOR_NAMES, KERNEL_NAMES, METHOD_NAMES, PAIR_BY
from diffprobe.pipelines.cka.plot import COLOR_RANGES
from diffprobe.pipelines.similarity.config import NEIGHBOUR_NAMES, RDM_NAMES


def cka_options(f: Any) -> Any:
    """Options shared by every `cka` subcommand (they build a CKAConfig)."""
    return stack_options(f, [
        click.option("--kernel", type=click.Choice(KERNEL_NAMES), default="linear", show_default=True),
        click.option("--estimator", type=click.Choice(ESTIMATOR_NAMES), default="biased", show_default=True,
                     help="HSIC estimator; minibatch = unbiased HSIC summed over minibatches (any N, any kernel)."),
        click.option("--batch-size", type=click.IntRange(min=4), default=1024, show_default=True, help="Minibatch size."),
        click.option("--rbf-fraction", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True,
                     help="RBF bandwidth as a fraction of the median pairwise distance."),
        device_option(),
        progress_option(expose=False),
        max_memory_option("2GiB", "Memory the computation may hold (approximate)."),
        click.option("--method", type=click.Choice(METHOD_NAMES), default="auto", show_default=True,
                     help="Exact estimators: streamed feature space (linear) or in-memory N×N Grams."),
        click.option("--seed", type=int, default=0, show_default=True, help="Seed of the minibatch permutation."),
        click.option("--allow-incomplete", is_flag=True,
                     help="Compare only the finished items of a store whose extraction is not done; the outputs record "
                          "complete: false [default: such a store is an error]."),
        click.option("--out", "out", type=click.Path(file_okay=False), default=None,
                     help="Output folder for cka.csv, cka.json, cka.png [default: ./cka-<command>]."),
        overwrite_option("the --out folder"),
        click.option("--color-range", type=click.Choice(COLOR_RANGES), default=None,
                     help="Heatmap colour scale: unit (0–1, comparable across figures) or auto (the values' "
                          "min–max, stated in the colour bar) [default: auto for timesteps, unit otherwise]."),
        dry_run_option("Print the resolved settings and stop (an existing --out is still refused)."),
        click.option("--metric", "metrics", type=CommaList("str"), multiple=True,
                     help="Similarity measures, e.g. cka,cknna,mutual-knn: one CSV, JSON and heatmap each "
                          "(cka, mutual-knn, cknna, cycle-knn, svcca, pwcca, procrustes, rsa) [default: cka]."),
        click.option("--k", "k", type=click.IntRange(min=1), default=10, show_default=True, help="k-NN metrics: neighbours per item."),
        click.option("--neighbours", type=click.Choice(NEIGHBOUR_NAMES), default="cosine", show_default=True,
                     help="k-NN metrics: rank neighbours by cosine similarity or Euclidean distance."),
        click.option("--variance", type=click.FloatRange(0, 1, min_open=True), default=0.99, show_default=True,
                     help="SVCCA: the fraction of variance each side keeps."),
        click.option("--ridge", type=click.FloatRange(min=0), default=0.0, show_default=True, help="SVCCA/PWCCA: CCA regularisation."),
        click.option("--rdm", type=click.Choice(RDM_NAMES), default="correlation", show_default=True, help="RSA: item dissimilarity."),
        click.option("--rsa-sample", type=click.IntRange(min=3), default=None,
                     help="RSA on a seeded random subset of this many items (an estimate) [default: every item]."),
    ])  # fmt: skip


def _run(analysis: str, opts: dict[str, Any], stores: tuple[str, ...], selection: dict[str, Any]) -> None:
    """Build the CKAConfig, claim the output folder, then print the settings (--dry-run) or run
    ``analysis`` and write its outputs."""
    from diffprobe.outputs import claim_output
    from diffprobe.pipelines.cka.config import CKAConfig
    from diffprobe.pipelines.cka.outputs import DEFAULT_COLOR_RANGE

    cfg = CKAConfig(
        kernel=opts["kernel"], estimator=opts["estimator"], batch_size=opts["batch_size"], rbf_fraction=opts["rbf_fraction"],
        device=opts["device"], max_memory=opts["max_memory"], method=opts["method"], seed=opts["seed"],
        allow_incomplete=opts["allow_incomplete"],
    )  # fmt: skip
    from diffprobe.pipelines.similarity.config import SimilarityConfig
    from diffprobe.pipelines.similarity.metrics import METRICS

    metrics = list(dict.fromkeys(flatten(opts["metrics"]) or ("cka",)))
    for name in metrics:
        if name not in METRICS:
            raise METRICS.unknown(name)
    sim = SimilarityConfig(k=opts["k"], neighbours=opts["neighbours"], variance=opts["variance"], ridge=opts["ridge"], rdm=opts["rdm"],
                           rsa_sample=opts["rsa_sample"], seed=opts["seed"], device=opts["device"], max_memory=opts["max_memory"])  # fmt: skip
    out = claim_output(opts["out"] or f"cka-{analysis}", overwrite=opts["overwrite"])  # before any computation
    if opts["dry_run"]:
        named = dict(zip(("store_a", "store_b") if len(stores) == 2 else ("store",), stores))
        resolved = {"command": f"cka {analysis}", "selection": {**named, **selection}, "metrics": metrics, "config": cfg.to_dict(),
                    "similarity": sim.to_dict(), "out": str(out),
                    "color_range": opts["color_range"] or (DEFAULT_COLOR_RANGE[analysis] if metrics == ["cka"] else "auto")}  # fmt: skip
        click.echo(json.dumps(resolved, indent=1, default=str))
        return
    from diffprobe.pipelines.cka import analyses
    from diffprobe.pipelines.cka.outputs import write_outputs

    for name in metrics:
        result = getattr(analyses, f"cka_{analysis}")(*stores, **selection, config=cfg, metric=name, similarity=None if name == "cka" else sim)
        paths = write_outputs(result, out, overwrite=opts["overwrite"], color_range=opts["color_range"], claimed=True)
        click.echo(result.summary())
        click.echo(f"wrote {paths['csv']}, {paths['json']}, {paths['png']}")


@click.group("cka")
def cka_group() -> None:
    """Centred kernel alignment between blocks, timesteps or two stores (CSV + JSON + heatmap)."""


def _one_store_matrix(name: str, doc: str, fixed: Decorator, varied: Decorator,
                      select: Callable[[tuple, tuple], dict[str, Any]]) -> None:  # fmt: skip
    """``cka blocks`` (the blocks stored at one t) and ``cka timesteps`` (the timesteps of one block):
    the same command but for which key field is fixed; ``select(timesteps, blocks)`` says how."""

    def command(store: str, split: str | None, timesteps: tuple, blocks: tuple, pools: tuple, **opts: Any) -> None:
        sel = {"split": split, "pool": one(flatten(pools), "--pool"), **select(flatten(timesteps), flatten(blocks))}
        _run(name, opts, (store,), sel)

    command.__doc__ = doc
    stack_options(command, [
        cka_group.command(name),
        click.argument("store", type=click.Path(exists=True)),
        click.option("--split", default=None, help="Split to use [default: the store's only split]."),
        fixed,
        pools_option("Pool size p, or 'full' for the full map.", default=("1",), show_default=True),
        varied,
        cka_options,
    ])  # fmt: skip


_one_store_matrix(
    "blocks", "CKA between every pair of U-Net blocks of STORE at one timestep (the encoder/decoder X-shape).",
    timesteps_option("Timestep [default: the only one stored]."),
    blocks_option("Blocks to compare: numbers, ranges or module paths, e.g. 19,24,30 or 1-10 [default: all stored]."),
    lambda ts, bs: {"t": one(ts, "--t"), "blocks": list(bs) or None},
)
_one_store_matrix(
    "timesteps", "CKA between every pair of timesteps of one block of STORE.",
    blocks_option("Block: a number or module path [default: the only one stored]."),
    timesteps_option("Timesteps to compare, e.g. 10,90,150 [default: all stored]."),
    lambda ts, bs: {"block": one(bs, "--blocks"), "timesteps": list(ts) or None},
)


@cka_group.command("stores")
@click.argument("store_a", type=click.Path(exists=True))
@click.argument("store_b", type=click.Path(exists=True))
@click.option("--split", default=None, help="Split to use [default: the only split both stores hold].")
@click.option("--keys-a", multiple=True, help="Array names of A to use; shell patterns like 't0090_*_p1' (repeatable).")
@click.option("--keys-b", multiple=True, help="Array names of B to use (repeatable) [default: all].")
@click.option("--pair-by", type=click.Choice(PAIR_BY), default="id", show_default=True,
              help="Pair the two stores' items by id (the same images in any order; differing ids are an error that counts them), "
                   "or by row position (stores of the same images listed under other ids).")  # fmt: skip
@cka_options
def stores_cmd(store_a: str, store_b: str, split: str | None, keys_a: tuple[str, ...], keys_b: tuple[str, ...], pair_by: str,
               **opts: Any) -> None:  # fmt: skip
    """CKA of every array of STORE_A against every array of STORE_B (e.g. U-Net blocks × ViT layers).

    Arrays extracted at one t and pool are labelled by block number (diffusion models) or layer name
    (image models such as timm's).
    """
    sel = {"split": split, "keys_a": list(keys_a) or None, "keys_b": list(keys_b) or None, "pair_by": pair_by}
    _run("stores", opts, (store_a, store_b), sel)
