"""``diffprobe probe difffeed DATA``: the paper's feedback method, trained on images with the U-Net in the loop."""

from __future__ import annotations

import json
from typing import Any

import click

from diffprobe.commands.options import (
    CommaList,
    blocks_option,
    claim_outputs,
    flatten,
    json_option,
    model_options,
    one,
    overwrite_option,
    timesteps_option,
)
from diffprobe.commands.probe_options import data_config, hyper_options, hyper_params, run_options, split_options
from diffprobe.probes.difffeed import DifFeedProbe

#: The read block when none is given: five blocks after the middle block (24 of the 37-block 256 model).
READ_AFTER_MIDDLE = 5
#: DifFeedProbe parameters that have options of their own here (model, data and noise)
_OWN = frozenset({"model", "checkpoint", "flags", "class_label", "random_weights", "t", "read_block", "feedback", "seed",
                  "checkpoint_dir"})  # fmt: skip


@click.command("difffeed")
@click.argument("data", type=click.Path(exists=True))
@click.option("--model", "-m", required=True, help="Model preset (see `diffprobe models`) or `adm` with --flags.")
@model_options
@click.option("--random-weights", is_flag=True, help="No checkpoint: a seeded random initialisation (tests only).")
@click.option("--store", type=click.Path(exists=True), default=None,
              help="A store holding the feedback blocks' native maps (--pools full) at --t: pass 1 is read from it.")
@timesteps_option("Timestep t [default: 150, the paper's].", default=("150",), show_default=False)
@blocks_option("The block read after pass 2 (one) [default: 5 after the middle block: 24 of the 256 model].")
@click.option("--feedback", type=CommaList("block"), multiple=True,
              help="Decoder blocks fed back, e.g. 11-19:2 [default: the second of each decoder level: 21,24,…,36 of the 256 model].")
@click.option("--noise-seed", "noise_seed", type=int, default=0, show_default=True, help="Noise seed (as extraction's --seed; a --store must share it).")
@split_options
@hyper_options(DifFeedProbe, skip=_OWN)
@run_options
@click.option("--checkpoint-dir", type=click.Path(file_okay=False), default=None,
              help="Write a checkpoint here after every epoch; re-running the same command resumes from it.")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Write the result as JSON here.")
@click.option("--save", type=click.Path(file_okay=False), default=None, help="Save the trained probe to this folder.")
@overwrite_option("the --out and --save outputs")
@json_option("Print the full result as JSON.")
def difffeed(data: str, model: str, checkpoint: str | None, flags: str, class_label: int | None, random_weights: bool,
             store: str | None, timesteps: tuple, blocks: tuple, feedback: tuple, noise_seed: int, **o: Any) -> None:  # fmt: skip
    """Train DifFeed on the images in DATA (as for `extract`) and print its metrics.

    Pass 1 gives the feedback blocks (from --store when it holds them, else computed); pass 2 adds the
    feedback nets' outputs to the mirrored encoder blocks and stops after the read block, which goes to
    the attention head. Only the feedback nets and the head train. --seed (as for every probe) seeds
    the hold-out; --noise-seed the diffusion noise.
    """
    from diffprobe.blocks import resolve_blocks
    from diffprobe.device import resolve_device
    from diffprobe.extract.adm.feedback import require_adm
    from diffprobe.extract.registry import model_spec
    from diffprobe.keyvalue import load_pairs
    from diffprobe.pipelines.difffeed import run_difffeed
    from diffprobe.probes.io import save_probe
    from diffprobe.probes.report import summary_lines
    from diffprobe.probes.result import ProbeConfig
    from diffprobe.store.layout import FeatureKey

    data_cfg, params = data_config(o), hyper_params(o)
    epochs, draws = params.get("epochs", 28), params.get("draws", 1)
    if draws > 1 and epochs < draws:
        raise click.BadParameter(f"expected at least as many epochs as draws, got {epochs} < {draws}", param_hint="--epochs")
    claim_outputs({"--out": o["out"], "--save": o["save"]}, o["overwrite"])
    flag_map = load_pairs(flags)
    spec = model_spec(model, flag_map, checkpoint)
    require_adm(spec)
    read = one(flatten(blocks), "--blocks")
    if read is None:
        read = next(b.number for b in spec.blocks if b.stage == "middle") + READ_AFTER_MIDDLE
    read = resolve_blocks([read], spec.blocks)[0]
    params.update({
        "model": model, "checkpoint": checkpoint, "flags": tuple(flag_map.items()), "class_label": class_label,
        "random_weights": random_weights, "t": one(flatten(timesteps), "--t"), "read_block": read, "feedback": list(flatten(feedback)) or None,
        "seed": noise_seed, "device": str(resolve_device(o["device"])), "checkpoint_dir": o["checkpoint_dir"],
    })  # fmt: skip
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
