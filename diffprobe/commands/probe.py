"""`diffprobe probe {logistic,linear,knn,attention,difformer,predict}` and `diffprobe sweep`.

Thin commands: options → ProbeConfig / SweepConfig → one library call. One subcommand per entry of
the probe registry (``diffprobe.probes.registry.PROBES``), which imports nothing heavy.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from diffprobe.cli import main
from diffprobe.commands.options import CommaList, flatten, stack_options
from diffprobe.errors import ConfigError
from diffprobe.probes.registry import PROBES


def parse_params(items: tuple[str, ...]) -> dict[str, Any]:
    """``("lr=0.01,0.1", "optimizer=adamw")`` → {"lr": (0.01, 0.1), "optimizer": "adamw"} (JSON scalars)."""
    out: dict[str, Any] = {}
    for item in items:
        name, eq, text = item.partition("=")
        if not eq or not name.strip():
            raise ConfigError(f"expected --param NAME=VALUE, got {item!r}")
        vals = [_scalar(v) for v in text.split(",")] if "," in text else [_scalar(text)]
        out[name.strip()] = tuple(vals) if len(vals) > 1 else vals[0]
    return out


def _scalar(text: str) -> Any:
    text = text.strip()
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return {"none": None, "true": True, "false": False}.get(text.lower(), text)


def data_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """Options that build a DataConfig (shared by every probe subcommand and `sweep`)."""
    opts = [
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
        click.option("--stream", is_flag=True, help="Stream features from disk in chunks [default: only when over --max-memory-gb]."),
        click.option("--max-memory-gb", type=click.FloatRange(min=0, min_open=True), default=4.0, show_default=True),
        click.option("-p", "--param", "params", multiple=True, metavar="NAME=VALUE",
                     help="Probe hyper-parameter, repeatable: -p C=0.1, -p lr=0.01,0.1, -p optimizer=adamw, -p dim=256."),
        click.option("--device", default=None, help="cpu, cuda or auto [default: the probe's own]."),
        click.option("--dry-run", is_flag=True, help="Print the resolved configuration and stop."),
    ]
    return stack_options(f, opts)


def _data_config(o: dict[str, Any]) -> Any:
    from diffprobe.probes.plan import DataConfig

    return DataConfig(
        train_split=o["train_split"], eval_split=o["eval_split"], holdout=o["holdout"], folds=o["folds"],
        train_subset=o["train_subset"], train_fraction=o["train_fraction"], seed=o["seed"],
        standardize=o["standardize"], lazy=True if o["stream"] else None, max_memory_gb=o["max_memory_gb"],
    )


def _params(o: dict[str, Any]) -> dict[str, Any]:
    params = parse_params(o["params"])
    if o["device"] is not None:
        params["device"] = o["device"]
    return params


def _as_json(cfg: Any) -> str:
    from dataclasses import asdict

    d = asdict(cfg)
    d["params"] = dict(cfg.params)
    return json.dumps(d, indent=1, default=str)


@main.group("probe")
def probe_group() -> None:
    """Train a probe on stored features and print its metrics (top-1, top-5, per class)."""


def _make_probe_command(name: str) -> None:
    @probe_group.command(name)
    @click.argument("store", type=click.Path(exists=True))
    @click.option("--t", "t", type=CommaList("int"), multiple=True, help="Timestep(s), e.g. 150 or 90,150.")
    @click.option("--block", type=CommaList("int"), multiple=True, help="Block(s), e.g. 24 or 19,24,30.")
    @click.option("--pool", type=CommaList("pool"), multiple=True, help="Pool size(s) or 'full', e.g. 2.")
    @click.option("--key", "keys", multiple=True, help="Array name(s) instead of / besides --t/--block/--pool (imported arrays too).")
    @data_options
    @click.option("--out", type=click.Path(dir_okay=False), default=None, help="Write the result as JSON here.")
    @click.option("--csv", "csv_path", type=click.Path(dir_okay=False), default=None, help="Append the tidy CSV row here.")
    @click.option("--save", type=click.Path(file_okay=False), default=None, help="Save the trained probe to this folder.")
    @click.option("--json", "as_json", is_flag=True, help="Print the full result as JSON.")
    def command(store: str, t: tuple, block: tuple, pool: tuple, keys: tuple[str, ...], out: str | None,
                csv_path: str | None, save: str | None, as_json: bool, **o: Any) -> None:
        from diffprobe.probes.data import default_splits, resolve_keys
        from diffprobe.probes.io import save_probe
        from diffprobe.probes.run import ProbeConfig, run_probe
        from diffprobe.store import open_store

        data = _data_config(o)
        with open_store(store) as s:
            train_split, _ = default_splits(list(s.splits), data.train_split, data.eval_split)
            infos = resolve_keys(s, train_split, flatten(t), flatten(block), flatten(pool), keys)
            cfg = ProbeConfig(name, tuple(k.name for k in infos), _params(o), data)
            if o["dry_run"]:
                click.echo(_as_json(cfg))
                return
            if save and data.folds:
                raise ConfigError("expected --save without --folds (k-fold trains one probe per fold)")
            res = run_probe(s, cfg)
        if out:
            res.save_json(out)
        if csv_path:
            _append_csv(res.csv_row(), Path(csv_path))
        if save and res.trained is not None:
            save_probe(res.trained, save)
        click.echo(json.dumps(res.to_dict(), indent=1, default=str) if as_json else _summary(res))

    command.help = f"Train the {name} probe on STORE's features at --t/--block/--pool (several keys are concatenated)."


for _name in PROBES:
    _make_probe_command(_name)


@probe_group.command("predict")
@click.argument("saved", type=click.Path(exists=True, file_okay=False))
@click.argument("store", type=click.Path(exists=True))
@click.option("--split", default="val", show_default=True, help="Split of STORE to predict.")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="CSV of id, predicted class and probabilities.")
@click.option("--device", default=None, help="cpu, cuda or auto [default: as saved].")
def predict_cmd(saved: str, store: str, split: str, out: str | None, device: str | None) -> None:
    """Apply a probe saved with `probe … --save SAVED` to a split of another STORE."""
    import numpy as np

    from diffprobe.probes.io import load_probe
    from diffprobe.probes.metrics import classification_metrics
    from diffprobe.store import open_store

    trained = load_probe(saved, device=device)
    with open_store(store) as s:
        ids, proba = trained.predict_store(s, split)
        items = np.flatnonzero(s.valid(split))
        labels = np.asarray(s.labels(split))[items]
    pred = proba.argmax(1)
    if out:
        names = trained.class_names
        with open(out, "w") as f:
            f.write(",".join(["id", "pred", "label", *names]) + "\n")
            for i, p, y, row in zip(ids, pred, labels, proba):
                f.write(",".join([str(i), names[p], str(y), *(f"{v:.6g}" for v in row)]) + "\n")
    click.echo(f"predicted {len(ids)} items of {split!r} with the {trained.probe} probe on {', '.join(k.name for k in trained.keys)}")
    if (labels >= 0).any():
        m = classification_metrics(labels[labels >= 0], proba[labels >= 0], trained.class_names)
        click.echo(f"top-1 {100 * m['top1']:.2f}%  top-5 {100 * m['top5']:.2f}%  ({m['n']} labelled)")


@main.command("sweep")
@click.argument("store", type=click.Path(exists=True))
@click.option("--probe", "probe_name", type=click.Choice(list(PROBES)), default="logistic", show_default=True)
@click.option("--t", "t", type=CommaList("int"), multiple=True, help="Only these timesteps [default: all].")
@click.option("--blocks", type=CommaList("int"), multiple=True, help="Only these blocks [default: all].")
@click.option("--pools", type=CommaList("pool"), multiple=True, help="Only these pool sizes ('full' too) [default: all].")
@click.option("--key", "keys", multiple=True, help="Exactly these array names instead of the filters.")
@click.option("--no-joint", is_flag=True, help="Linear probe: fit keys one by one instead of all heads in one pass.")
@data_options
@click.option("--out", type=click.Path(file_okay=False), default="sweep", show_default=True,
              help="Folder for results.csv, results.json, best.json and the plots.")
def sweep_cmd(store: str, probe_name: str, t: tuple, blocks: tuple, pools: tuple, keys: tuple[str, ...],
              no_joint: bool, out: str, **o: Any) -> None:
    """Fit one probe per (t, block, pool) key of STORE; write a tidy table, the best keys and plots."""
    from diffprobe.pipelines.sweep import SweepConfig, run_sweep
    from diffprobe.store import open_store

    cfg = SweepConfig(probe_name, _params(o), flatten(t), flatten(blocks), flatten(pools), keys, _data_config(o), not no_joint)
    if o["dry_run"]:
        click.echo(_as_json(cfg))
        return
    with open_store(store) as s:
        res = run_sweep(s, cfg, out)
    click.echo(f"{'key':<18} {'t':>5} {'block':>5} {'pool':>5} {'top-1':>7} {'top-5':>7}")
    for r in res.rows:
        click.echo(f"{r['key']:<18} {r['t']!s:>5} {r['block']!s:>5} {r['pool']!s:>5} {100 * r['top1']:>6.2f}% {100 * r['top5']:>6.2f}%")
    b = res.best["overall"]
    click.echo(f"best: {b['key']} (top-1 {100 * b['top1']:.2f}%)")
    click.echo(f"wrote {', '.join(res.files.values())}")


def _summary(res: Any) -> str:
    m = res.metrics
    keys = "+".join(k.name for k in res.keys)
    lines = [
        f"{res.config.probe} probe on {keys}: train {res.train_split} ({res.n_train}) → eval {res.eval_split} ({res.n_eval})",
        f"top-1 {100 * m['top1']:.2f}%  top-5 {100 * m['top5']:.2f}%  mean per class {100 * m['mean_per_class']:.2f}%"
        f"  (fit {res.fit_seconds:.2f} s)",
    ]
    if res.selected:
        lines.append("selected: " + ", ".join(f"{k}={v}" for k, v in res.selected.items()))
    if len(res.fold_top1) > 1:
        lines.append("folds top-1: " + ", ".join(f"{100 * v:.2f}%" for v in res.fold_top1))
    lines.append("per class: " + ", ".join(f"{k} {100 * v:.1f}%" for k, v in m["per_class"].items() if v is not None))
    return "\n".join(lines)


def _append_csv(row: dict[str, Any], path: Path) -> None:
    import csv

    from diffprobe.probes.run import CSV_COLUMNS

    new = not path.exists()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(CSV_COLUMNS), extrasaction="ignore")
        if new:
            w.writeheader()
        w.writerow(row)
