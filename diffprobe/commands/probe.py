"""``diffprobe probe {logistic,linear,knn,attention,difformer}`` and ``diffprobe probe predict``.

Thin commands: options → ProbeConfig → one library call. One subcommand per entry of the probe
registry (``diffprobe.probes.registry.PROBES``), which imports nothing heavy.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import click

from diffprobe.commands.dense import dense
from diffprobe.commands.difffeed import difffeed
from diffprobe.commands.options import (
    Decorator,
    blocks_option,
    claim_outputs,
    device_option,
    dry_run_option,
    flatten,
    json_option,
    max_memory_option,
    overwrite_option,
    pools_option,
    stack_options,
    timesteps_option,
)
from diffprobe.errors import ConfigError
from diffprobe.keyvalue import parse_items
from diffprobe.probes.registry import PROBES


def key_options(default: str) -> Decorator:
    """--t/--blocks/--pool/--key: which arrays of the store (every probe subcommand and `sweep`);
    ``default`` says what an option left out means."""
    return lambda f: stack_options(f, [
        timesteps_option(f"Timesteps, e.g. 150 or 90,150 [default: {default}]."),
        blocks_option(f"Blocks: numbers or module paths, e.g. 24 or 19,24,30 [default: {default}].", aliases=("--block",)),
        pools_option(f"Pool sizes or 'full', e.g. 2 [default: {default}].", aliases=("--pools",)),
        click.option("--key", "keys", multiple=True, help="Array name(s) instead of --t/--blocks/--pool (imported arrays too)."),
    ])  # fmt: skip


def data_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """Options that build a DataConfig and the probe's parameters (shared by every probe subcommand and `sweep`)."""
    return stack_options(f, [
        click.option("--train-split", default=None, help="Split to train on [default: train, else the first split]."),
        click.option("--eval-split", default=None, help="Split to evaluate on [default: val/validation/test; else a hold-out]."),
        click.option("--holdout", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.2, show_default=True,
                     help="Held-out fraction when there is no eval split."),
        click.option("--folds", type=click.IntRange(min=2), default=None, help="k-fold cross-validation within the train split."),
        click.option("--train-subset", type=click.Path(dir_okay=False, exists=True), default=None,
                     help="File listing the training items to use (ids, paths or file names; e.g. ImageNet 1%)."),
        click.option("--train-fraction", type=click.FloatRange(0, 1, min_open=True), default=None,
                     help="Stratified fraction of the training items."),
        click.option("--seed", type=int, default=0, show_default=True, help="Seed of hold-out, folds and fractions."),
        click.option("--standardize/--no-standardize", default=True, show_default=True, help="Standardise with train statistics."),
        click.option("--stream", is_flag=True, help="Stream features from disk in chunks [default: only when over --max-memory]."),
        max_memory_option("4GiB", "Features larger than this stay on disk and are streamed."),
        click.option("-p", "--param", "params", multiple=True, metavar="NAME=VALUE",
                     help="Probe hyper-parameter, repeatable: -p C=0.1, -p lr=0.01,0.1, -p optimizer=adamw, -p dim=256."),
        device_option(None, "cpu, cuda, cuda:K or auto [default: the probe's own]."),
        dry_run_option(),
    ])  # fmt: skip


def data_config(o: dict[str, Any]) -> Any:
    """The DataConfig of :func:`data_options`' values."""
    from diffprobe.probes.plan import DataConfig

    return DataConfig(
        train_split=o["train_split"], eval_split=o["eval_split"], holdout=o["holdout"], folds=o["folds"],
        train_subset=o["train_subset"], train_fraction=o["train_fraction"], seed=o["seed"],
        standardize=o["standardize"], lazy=True if o["stream"] else None, max_memory=o["max_memory"],
    )  # fmt: skip


def probe_params(o: dict[str, Any]) -> dict[str, Any]:
    """The probe's hyper-parameters: ``-p`` values, and ``--device`` when given."""
    params = parse_items(o["params"])
    if o["device"] is not None:
        params["device"] = o["device"]
    return params


@click.group("probe")
def probe_group() -> None:
    """Train a probe on stored features and print its metrics (top-1, top-5, per class)."""


def _make_probe_command(name: str) -> None:
    @probe_group.command(name)
    @click.argument("store", type=click.Path(exists=True))
    @key_options("the only one stored")
    @data_options
    @click.option("--out", type=click.Path(dir_okay=False), default=None, help="Write the result as JSON here.")
    @click.option("--csv", "csv_path", type=click.Path(dir_okay=False), default=None, help="Append the tidy CSV row here.")
    @click.option("--save", type=click.Path(file_okay=False), default=None, help="Save the trained probe to this folder.")
    @overwrite_option("the --out and --save outputs")
    @json_option("Print the full result as JSON.")
    def command(store: str, timesteps: tuple, blocks: tuple, pools: tuple, keys: tuple[str, ...], out: str | None,
                csv_path: str | None, save: str | None, overwrite: bool, as_json: bool, **o: Any) -> None:  # fmt: skip
        from diffprobe.probes.io import save_probe
        from diffprobe.probes.report import summary_lines, write_csv
        from diffprobe.probes.run import config_for_store, run_probe
        from diffprobe.store import open_store

        data = data_config(o)
        if save and data.folds:
            raise ConfigError("expected --save without --folds (k-fold trains one probe per fold)")
        claim_outputs({"--out": out, "--save": save}, overwrite)
        with open_store(store) as s:
            cfg = config_for_store(s, name, flatten(timesteps), flatten(blocks), flatten(pools), keys, probe_params(o), data)
            if o["dry_run"]:
                click.echo(json.dumps(cfg.to_dict(), indent=1, default=str))
                return
            res = run_probe(s, cfg)
        if out:
            res.save_json(out, overwrite=overwrite)
        if csv_path:
            write_csv([res.csv_row()], csv_path, append=True)
        if save and res.trained is not None:
            save_probe(res.trained, save, overwrite=overwrite)
        click.echo(json.dumps(res.to_dict(), indent=1, default=str) if as_json else "\n".join(summary_lines(res)))

    command.help = f"Train the {name} probe on STORE's features at --t/--blocks/--pool (several keys are concatenated)."


for _name in PROBES:
    _make_probe_command(_name)


@probe_group.command("predict")
@click.argument("saved", type=click.Path(exists=True, file_okay=False))
@click.argument("source", type=click.Path(exists=True))
@click.option("--split", default="val", show_default=True, help="Split of SOURCE to predict.")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="CSV of id, predicted class and probabilities.")
@overwrite_option("--out")
@device_option(None, "cpu, cuda, cuda:K or auto [default: as saved].")
def predict_cmd(saved: str, source: str, split: str, out: str | None, overwrite: bool, device: str | None) -> None:
    """Apply a probe saved with `probe … --save SAVED` to a split of SOURCE: another store, or — for
    probes that train on images (difffeed) — images, as for `extract`."""
    from diffprobe.probes.io import load_probe
    from diffprobe.probes.predict import predict_data, predict_split
    from diffprobe.probes.registry import IMAGE_PROBES
    from diffprobe.store import open_store

    claim_outputs({"--out": out}, overwrite)
    trained = load_probe(saved, device=device)
    if trained.probe in IMAGE_PROBES:
        pred = predict_data(trained, source, split)
    else:
        with open_store(source) as s:
            pred = predict_split(trained, s, split)
    if out:
        pred.write_csv(out, overwrite=overwrite)
    click.echo(f"predicted {len(pred.ids)} items of {split!r} with the {trained.probe} probe on {', '.join(k.name for k in trained.keys)}")
    m = pred.metrics()
    if m is not None:
        click.echo(f"top-1 {100 * m['top1']:.2f}%  top-5 {100 * m['top5']:.2f}%  ({m['n']} labelled)")


probe_group.add_command(difffeed)
probe_group.add_command(dense)
