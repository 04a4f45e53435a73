"""``diffprobe probe difffeed DATA``: the paper's feedback method, trained on images with the U-Net in the loop."""

from __future__ import annotations

import json
from typing import Any

import click

from diffprobe.commands.options import (
    CommaList,
    blocks_option,
    claim_outputs,
    device_option,
    dry_run_option,
    flatten,
    json_option,
    model_options,
    one,
    overwrite_option,
    timesteps_option,
)

#: The read block when none is given: five blocks after the middle block (24 of the 37-block 256 model).
READ_AFTER_MIDDLE = 5


@click.command("difffeed")
@click.argument("data", type=click.Path(exists=True))
@click.option("--model", "-m", required=True, help="Model preset (see `diffprobe models`) or `adm` with --flags.")
@model_options
@click.option("--random-weights", is_flag=True, help="No checkpoint: a seeded random initialisation (tests only).")
@click.option("--store", type=click.Path(exists=True), default=None,
              help="A store holding the feedback blocks' native maps (--pool full) at --t: pass 1 is read from it.")
@timesteps_option("Timestep t [default: 150, the paper's].", default=("150",), show_default=False)
@blocks_option("The block read after pass 2 (one) [default: 5 after the middle block: 24 of the 256 model].", aliases=("--block",))
@click.option("--feedback", type=CommaList("block"), multiple=True,
              help="Decoder blocks fed back, e.g. 11-19:2 [default: the second of each decoder level: 21,24,…,36 of the 256 model].")
@click.option("--batch-size", type=click.IntRange(min=1), default=4, show_default=True, help="Images per training step (the paper's 4).")
@click.option("--epochs", type=click.IntRange(min=1), default=28, show_default=True, help="Epochs (lr × 0.1 after every quarter).")
@click.option("--seed", type=int, default=0, show_default=True, help="Noise seed (as at extraction; a --store must share it).")
@click.option("--draws", type=click.IntRange(min=1), default=1, show_default=True, help="Noise draws: epoch e trains on draw e mod K.")
@click.option("--train-split", default=None, help="Split to train on [default: train, else the first split].")
@click.option("--eval-split", default=None, help="Split to evaluate on [default: val/validation/test; else a hold-out].")
@click.option("--holdout", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.2, show_default=True,
              help="Held-out fraction when there is no eval split.")
@click.option("-p", "--param", "params", multiple=True, metavar="NAME=VALUE",
              help="DifFeed hyper-parameter, repeatable: -p lr=0.01, -p dim=256, -p optimizer=adamw, -p eval_draws=mean.")
@device_option()
@click.option("--checkpoint-dir", type=click.Path(file_okay=False), default=None,
              help="Write a checkpoint here after every epoch; re-running the same command resumes from it.")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Write the result as JSON here.")
@click.option("--save", type=click.Path(file_okay=False), default=None, help="Save the trained probe to this folder.")
@overwrite_option("the --out and --save outputs")
@json_option("Print the full result as JSON.")
@dry_run_option()
def difffeed(data: str, model: str, checkpoint: str | None, flags: str, class_label: int | None, random_weights: bool,
             store: str | None, timesteps: tuple, blocks: tuple, feedback: tuple, **o: Any) -> None:  # fmt: skip
    """Train DifFeed on the images in DATA (as for `extract`) and print its metrics.

    Pass 1 gives the feedback blocks (from --store when it holds them, else computed); pass 2 adds the
    feedback nets' outputs to the mirrored encoder blocks and stops after the read block, which goes to
    the attention head. Only the feedback nets and the head train.
    """
    from diffprobe.extract.adm.feedback import require_adm
    from diffprobe.extract.blocks import resolve_blocks
    from diffprobe.extract.registry import model_spec
    from diffprobe.keyvalue import load_pairs, parse_items
    from diffprobe.probes.difffeed_run import run_difffeed
    from diffprobe.probes.io import save_probe
    from diffprobe.probes.plan import DataConfig
    from diffprobe.probes.report import summary_lines
    from diffprobe.probes.run import ProbeConfig
    from diffprobe.store.layout import FeatureKey

    if o["draws"] > 1 and o["epochs"] < o["draws"]:
        raise click.BadParameter(f"expected at least as many epochs as draws, got {o['epochs']} < {o['draws']}", param_hint="--epochs")
    claim_outputs({"--out": o["out"], "--save": o["save"]}, o["overwrite"])
    flag_map = load_pairs(flags)
    spec = model_spec(model, flag_map, checkpoint)
    require_adm(spec)
    table = spec.blocks
    read = one(flatten(blocks), "--blocks")
    if read is None:
        read = next(b.number for b in table if b.stage == "middle") + READ_AFTER_MIDDLE
    read = resolve_blocks([read], table)[0]
    params = {
        "model": model, "checkpoint": checkpoint, "flags": tuple(flag_map.items()), "class_label": class_label,
        "random_weights": random_weights, "t": one(flatten(timesteps), "--t"), "read_block": read,
        "feedback": list(flatten(feedback)) or None, "batch_size": o["batch_size"], "epochs": o["epochs"], "seed": o["seed"],
        "draws": o["draws"], "device": o["device"], "checkpoint_dir": o["checkpoint_dir"], **parse_items(o["params"]),
    }  # fmt: skip
    data_cfg = DataConfig(train_split=o["train_split"], eval_split=o["eval_split"], holdout=o["holdout"])
    cfg = ProbeConfig("difffeed", (FeatureKey(params["t"], read, None).name,), params, data_cfg)
    if o["dry_run"]:
        click.echo(json.dumps({**cfg.to_dict(), "data_path": data, "store": store}, indent=1, default=str))
        return
    res = run_difffeed(data, cfg, store)
    if o["out"]:
        res.save_json(o["out"], overwrite=o["overwrite"])
    if o["save"] and res.trained is not None:
        save_probe(res.trained, o["save"], overwrite=o["overwrite"])
    click.echo(json.dumps(res.to_dict(), indent=1, default=str) if o["as_json"] else "\n".join(summary_lines(res)))
