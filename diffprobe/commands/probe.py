"""``diffprobe probe NAME STORE`` for every probe of the registries, and ``diffprobe probe predict``.

Thin commands: options → ProbeConfig → one library call. The subcommands are built when asked for
(a lazy click group): each takes the shared array selection and data options and one named option
per hyper-parameter of its estimator, so ``diffprobe --help`` and ``diffprobe probe --help`` import
no torch.
"""

from __future__ import annotations

import json
from typing import Any

import click

from diffprobe.commands.options import claim_outputs, device_option, json_option, overwrite_option, progress_option
from diffprobe.commands.probe_options import (
    allow_incomplete_option,
    data_config,
    data_options,
    hyper_options,
    hyper_params,
    run_options,
    selection_of,
    selection_options,
)
from diffprobe.errors import ConfigError
from diffprobe.probes.registry import DENSE_PROBES, IMAGE_PROBES, PROBES

#: the subcommands that are not one feature probe each
_OWN = {"predict": "diffprobe.commands.probe:predict_cmd", "dense": "diffprobe.commands.dense:dense",
        "difffeed": "diffprobe.commands.difffeed:difffeed"}  # fmt: skip


class _ProbeGroup(click.Group):
    """One subcommand per registered probe, built on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [*PROBES.names(), *DENSE_PROBES.names(), *IMAGE_PROBES.names(), "predict"]

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        import importlib

        if name in _OWN:
            module, _, attr = _OWN[name].partition(":")
            return getattr(importlib.import_module(module), attr)  # type: ignore[no-any-return]
        if name in PROBES:
            return feature_probe_command(name)
        return None

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(n, "Train the feature probe on a store's arrays (its hyper-parameters: --help)") for n in PROBES.names()]
        rows += [("dense", "A segmentation head on a store's feature maps and masks"),
                 ("difffeed", "The paper's feedback method, trained on images with the U-Net in the loop"),
                 ("predict", "Apply a saved probe to a split of a store (or to images)")]  # fmt: skip
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group("probe", cls=_ProbeGroup)
def probe_group() -> None:
    """Train a probe on stored features (or images) and print its metrics."""


def feature_probe_command(name: str) -> click.Command:
    """``diffprobe probe NAME STORE``: the shared options and the estimator's hyper-parameters."""
    est = PROBES.get(name)

    @click.command(name)
    @click.argument("store", type=click.Path(exists=True))
    @selection_options("the only one stored")
    @data_options
    @hyper_options(est)
    @run_options
    @click.option("--out", type=click.Path(dir_okay=False), default=None, help="Write the result as JSON here.")
    @click.option("--csv", "csv_path", type=click.Path(dir_okay=False), default=None, help="Append the tidy CSV row here.")
    @click.option("--save", type=click.Path(file_okay=False), default=None, help="Save the trained probe to this folder.")
    @overwrite_option("the --out and --save outputs")
    @json_option("Print the full result as JSON.")
    def command(store: str, out: str | None, csv_path: str | None, save: str | None, overwrite: bool, as_json: bool, **o: Any) -> None:
        from diffprobe.device import resolve_device
        from diffprobe.probes.io import save_probe
        from diffprobe.probes.report import summary_lines, write_csv
        from diffprobe.probes.run import config_for_store, run_probe
        from diffprobe.store import open_store

        selection, data, params = selection_of(o), data_config(o), hyper_params(o)
        params["device"] = str(resolve_device(o.pop("device")))
        if save and data.folds:
            raise ConfigError("expected --save without --folds (k-fold trains one probe per fold)")
        claim_outputs({"--out": out, "--save": save}, overwrite)
        with open_store(store) as s:
            cfg = config_for_store(s, name, selection, params, data)
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

    command.help = (f"Train the {name} probe on STORE's arrays at --t/--blocks/--pools (several are concatenated); "
                    "its hyper-parameters are the options below the data options.")  # fmt: skip
    return command


@click.command("predict")
@click.argument("saved", type=click.Path(exists=True, file_okay=False))
@click.argument("source", type=click.Path(exists=True))
@click.option("--split", default="val", show_default=True, help="Split of SOURCE to predict.")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="CSV of id, label and predicted class (names) and probabilities.")
@overwrite_option("--out")
@device_option()
@progress_option(expose=False)
@allow_incomplete_option()
def predict_cmd(saved: str, source: str, split: str, out: str | None, overwrite: bool, device: str, allow_incomplete: bool) -> None:
    """Apply a probe saved with `probe … --save SAVED` to a split of SOURCE: another store, or — for
    probes that train on images (difffeed) — images, as for `extract`."""
    from diffprobe.device import resolve_device
    from diffprobe.pipelines.difffeed import predict_data
    from diffprobe.probes.io import load_probe
    from diffprobe.probes.predict import predict_split
    from diffprobe.store import open_store

    claim_outputs({"--out": out}, overwrite)
    trained = load_probe(saved, device=str(resolve_device(device)))
    if trained.probe in IMAGE_PROBES:
        pred = predict_data(trained, source, split)
    else:
        with open_store(source) as s:
            pred = predict_split(trained, s, split, allow_incomplete=allow_incomplete)
    if not pred.complete:
        click.echo("INCOMPLETE: only the extracted items were predicted (--allow-incomplete)")
    if out:
        pred.write_csv(out, overwrite=overwrite)
    click.echo(f"predicted {len(pred.ids)} items of {split!r} with the {trained.probe} probe on {', '.join(k.name for k in trained.keys)}")
    m = pred.metrics()
    if m is not None:
        click.echo(f"top-1 {100 * m['top1']:.2f}%  top-5 {100 * m['top5']:.2f}%  ({m['n']} labelled)")
    if out:
        click.echo(f"wrote {out}")
