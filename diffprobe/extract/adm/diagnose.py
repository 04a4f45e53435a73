"""Explain why an ADM checkpoint's keys or shapes do not match a configuration."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

import diffprobe.extract.adm.presets  # noqa: F401  (registers the ADM presets searched here)
from diffprobe.extract.adm.config import ADMConfig
from diffprobe.extract.adm.unet import ADMUNet
from diffprobe.extract.presets import PRESETS


def expected_shapes(cfg: ADMConfig) -> dict[str, tuple[int, ...]]:
    """Every state-dict key of the model ``cfg`` describes, with its shape (built on meta)."""
    with torch.device("meta"):
        net = ADMUNet(cfg)
    return {k: tuple(v.shape) for k, v in net.state_dict().items()}


def infer_flags(sd: Mapping[str, Tensor]) -> dict[str, object]:
    """Flags that can be read off a checkpoint's keys and shapes."""
    flags: dict[str, object] = {"class_cond": "label_emb.weight" in sd}
    if "time_embed.0.weight" in sd:
        flags["num_channels"] = int(sd["time_embed.0.weight"].shape[1])
    if "input_blocks.0.0.weight" in sd:
        flags["in_channels"] = int(sd["input_blocks.0.0.weight"].shape[1])
        if "out.2.weight" in sd:
            flags["learn_sigma"] = int(sd["out.2.weight"].shape[0]) == 2 * flags["in_channels"]  # type: ignore[operator]
    if "label_emb.weight" in sd:
        flags["num_classes"] = int(sd["label_emb.weight"].shape[0])
    emb = sd.get("input_blocks.1.0.emb_layers.1.weight")
    conv = sd.get("input_blocks.1.0.in_layers.2.weight")
    if emb is not None and conv is not None:
        flags["use_scale_shift_norm"] = int(emb.shape[0]) == 2 * int(conv.shape[0])
    n_in = {int(k.split(".")[1]) for k in sd if k.startswith("input_blocks.")}
    if n_in:
        flags["input_blocks"] = max(n_in) + 1
    return flags


def matching_presets(sd: Mapping[str, Tensor]) -> list[str]:
    """Presets whose keys and shapes equal the checkpoint's."""
    shapes = {k: tuple(v.shape) for k, v in sd.items()}
    return [name for name, p in PRESETS.items() if p.family == "adm" and expected_shapes(p.config) == shapes]


def mismatch_hints(cfg: ADMConfig, sd: Mapping[str, Tensor]) -> list[str]:
    """Human hints naming the flag that most likely differs between ``cfg`` and the checkpoint."""
    hints: list[str] = []
    got = infer_flags(sd)
    if got.get("class_cond") and not cfg.class_cond:
        cond = [n for n, p in PRESETS.items() if p.family == "adm" and p.config.class_cond and p.config.image_size == cfg.image_size]
        use = f"; use {cond[0]}" if cond else ""
        hints.append(
            f"checkpoint has label_emb.weight: this is a class-conditional model{use} "
            "(or class_cond=True) with class_label=K"
        )
    if cfg.class_cond and not got.get("class_cond"):
        hints.append("checkpoint has no label_emb.weight: it is unconditional; set class_cond=False")
    for flag in ("num_channels", "learn_sigma", "use_scale_shift_norm", "in_channels", "num_classes"):
        if flag in got and got[flag] != getattr(cfg, flag):
            hints.append(f"checkpoint looks like {flag}={got[flag]}, the model has {flag}={getattr(cfg, flag)}")
    if "input_blocks" in got:
        n_in = 1 + len(cfg.mult) * cfg.num_res_blocks + len(cfg.mult) - 1
        if got["input_blocks"] != n_in:
            hints.append(
                f"checkpoint has {got['input_blocks']} input blocks, the model {n_in}: check num_res_blocks "
                f"({cfg.num_res_blocks}), channel_mult ({','.join(str(m) for m in cfg.mult)}) and image_size"
            )
    if any(".op.weight" in k for k in sd) and cfg.resblock_updown:
        hints.append("checkpoint has separate Downsample convs (…op.weight): set resblock_updown=False")
    if cfg.resblock_updown is False and not any(".op.weight" in k for k in sd) and any(
        k.endswith("in_layers.2.weight") for k in sd
    ):
        hints.append("checkpoint resamples inside ResBlocks: set resblock_updown=True")
    if not hints:
        hints.append("check attention_resolutions and channel_mult")
    presets = matching_presets(sd)
    if presets:
        hints.append(f"the checkpoint's keys and shapes match preset(s): {', '.join(presets)}")
    return hints
