"""Backbone registry: model names → families → constructed, weight-loaded :class:`Backbone`."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from diffprobe.device import resolve_device
from diffprobe.errors import CheckpointError, ConfigError
from diffprobe.extract.adm import ADMUNet
from diffprobe.extract.adm_config import ADMConfig, apply_flags
from diffprobe.extract.adm_diagnose import mismatch_hints
from diffprobe.extract.backbone import Backbone
from diffprobe.extract.blocks import BlockInfo, measure_blocks
from diffprobe.extract.checkpoint import file_sha256, read_state_dict
from diffprobe.extract.presets import PRESETS, Preset, get_preset

log = logging.getLogger(__name__)

#: family name → builder(name, config, checkpoint, device, dtype, class_label) → Backbone
FAMILIES: dict[str, Callable[..., Backbone]] = {}
#: Seed of random weights (``random_weights=True``), so that they are the same on every run.
RANDOM_INIT_SEED = 0


def register_family(name: str) -> Callable[[Callable[..., Backbone]], Callable[..., Backbone]]:
    def deco(fn: Callable[..., Backbone]) -> Callable[..., Backbone]:
        FAMILIES[name] = fn
        return fn

    return deco


def _check_state_dict(cfg: ADMConfig, model_sd: Mapping[str, torch.Tensor], sd: Mapping[str, torch.Tensor], path: Path) -> None:
    missing = [k for k in model_sd if k not in sd]
    unexpected = [k for k in sd if k not in model_sd]
    if missing or unexpected:
        lines = [f"checkpoint {path} does not fit this model: {len(missing)} missing and {len(unexpected)} unexpected keys"]
        if missing:
            lines.append(f"  missing (first 5): {', '.join(missing[:5])}")
        if unexpected:
            lines.append(f"  unexpected (first 5): {', '.join(unexpected[:5])}")
        lines += [f"  hint: {h}" for h in mismatch_hints(cfg, sd)]
        raise CheckpointError("\n".join(lines))
    bad = [(k, tuple(model_sd[k].shape), tuple(sd[k].shape)) for k in model_sd if tuple(model_sd[k].shape) != tuple(sd[k].shape)]
    if bad:
        k, exp, got = bad[0]
        lines = [f"checkpoint {path}: {len(bad)} tensors have the wrong shape; first: {k} expected {list(exp)}, got {list(got)}"]
        lines += [f"  {k2}: expected {list(e2)}, got {list(g2)}" for k2, e2, g2 in bad[1:4]]
        lines += [f"  hint: {h}" for h in mismatch_hints(cfg, sd)]
        raise CheckpointError("\n".join(lines))


@register_family("adm")
def build_adm(
    name: str,
    config: ADMConfig,
    checkpoint: Path | None,
    device: torch.device | str,
    dtype: torch.dtype,
    class_label: int | None,
) -> Backbone:
    if checkpoint is None:
        # Random init with PyTorch's default initialisers (no zeroed output branches), for tests
        # and benchmarks: seeded, so the same on every run on a device type; built on the device.
        dev = torch.device(device)
        with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
            torch.manual_seed(RANDOM_INIT_SEED)
            with dev:
                net = ADMUNet(config).to(dtype)
        log.warning("%s has random weights (--random-weights): its features say nothing about a trained model", name)
        return Backbone(name, config, net, class_label=class_label)
    sd = read_state_dict(checkpoint)
    with torch.device("meta"):
        net = ADMUNet(config)
    _check_state_dict(config, net.state_dict(), sd, checkpoint)
    sd = {k: v.to(device=device, dtype=dtype) for k, v in sd.items()}
    net.load_state_dict(sd, strict=True, assign=True)
    sha = file_sha256(checkpoint)
    log.info("loaded %s from %s (sha256 %s…)", name, checkpoint, sha[:12])
    return Backbone(name, config, net, checkpoint=checkpoint, checkpoint_sha256=sha, class_label=class_label)


def resolve_config(name: str, flags: Mapping[str, Any] | None = None) -> tuple[Preset | None, ADMConfig]:
    """The configuration of model ``name`` (a preset, or ``adm`` for flags only) with ``flags`` applied."""
    flags = dict(flags or {})
    if name == "adm":
        return None, apply_flags(ADMConfig(), flags)
    preset = get_preset(name)
    return preset, apply_flags(preset.config, flags)


def resolve_checkpoint(name: str, preset: Preset | None, checkpoint: str | Path | None, random_weights: bool = False) -> Path | None:
    """The weights model ``name`` loads: the file given, else the checkpoint bundled with its preset;
    None (random weights) only when asked for.

    Raises:
        ConfigError: both a checkpoint and random weights.  CheckpointError: no checkpoint to use
            (the message says where to get one).
    """
    if checkpoint is not None:
        if random_weights:
            raise ConfigError("expected --checkpoint or --random-weights, not both")
        return Path(checkpoint).expanduser()
    if random_weights:
        return None
    if preset is not None and preset.bundled_checkpoint is not None:
        return preset.bundled_checkpoint
    how = preset.how_to_get() if preset else "use the checkpoint that your --flags describe"
    raise CheckpointError(
        f"{name} needs its weights: {how} and pass it with --checkpoint PATH (diffprobe never downloads); "
        "or pass --random-weights for a randomly initialised network (tests and benchmarks only)"
    )


def check_model(name: str, flags: Mapping[str, Any], checkpoint: str | Path | None, random_weights: bool,
                class_label: int | None) -> tuple[ADMConfig, Path | None]:  # fmt: skip
    """Everything about a model that can be checked without building it: the configuration, the
    checkpoint (resolved; the file exists, is a checkpoint, and its tensors fit the architecture —
    read memory-mapped, so cheap even for the 256 model) and the class label.

    Returns:
        (configuration, checkpoint path or None for random weights).
    """
    preset, config = resolve_config(name, flags)
    path = resolve_checkpoint(name, preset, checkpoint, random_weights)
    if config.class_cond and class_label is None:
        raise ConfigError(
            f"{name} is class-conditional: pass --class-label K (class_label=K in Python), one fixed class for every "
            f"image in 0..{config.num_classes - 1}; never the true labels, which would leak the answer into the features"
        )
    if class_label is not None and not config.class_cond:
        raise ConfigError(f"--class-label {class_label} given, but {name} is not class-conditional")
    if path is not None:
        with torch.device("meta"):
            shapes = ADMUNet(config).state_dict()
        _check_state_dict(config, shapes, read_state_dict(path), path)
    return config, path


def load_backbone(
    name: str,
    checkpoint: str | Path | None = None,
    *,
    random_weights: bool = False,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    class_label: int | None = None,
    **flags: Any,
) -> Backbone:
    """Build a backbone by model name and (optionally) load its checkpoint.

    Args:
        name: a preset (``adm-256-uncond``, ``adm-32-fmnist``, … see ``diffprobe.PRESETS``) or
            ``adm`` to describe the architecture with guided-diffusion flags alone.
        checkpoint: state-dict file (float16 or float32); None: the checkpoint bundled with the
            preset (``adm-32-fmnist``), else an error that says where to get one.
        random_weights: no checkpoint: PyTorch's default initialisers, seeded (tests, benchmarks).
        device: where the weights live (a name or torch device; see :func:`diffprobe.device.resolve_device`).
        dtype: the weights' dtype.
        class_label: the single class fed to a class-conditional model for every image.
        **flags: guided-diffusion flags overriding the preset (``image_size=64`` …).

    Raises:
        ConfigError: unknown model or flag.
        CheckpointError: the file is missing, unsafe, or does not fit (the message says why).
    """
    preset, config = resolve_config(name, flags)
    family = preset.family if preset else "adm"
    if family not in FAMILIES:
        raise ConfigError(f"no backbone family {family!r}; valid: {', '.join(sorted(FAMILIES))}")
    ckpt = resolve_checkpoint(name, preset, checkpoint, random_weights)
    return FAMILIES[family](name, config, ckpt, resolve_device(device), dtype, class_label)


def create_backbone(name: str, checkpoint: str | Path | None = None, **kwargs: Any) -> Backbone:
    """Alias of :func:`load_backbone` (the registry's constructor name in design.md)."""
    return load_backbone(name, checkpoint, **kwargs)


def model_names() -> list[str]:
    """Every name :func:`load_backbone` accepts."""
    return sorted(PRESETS) + ["adm"]


def block_table(
    name: str, flags: Mapping[str, Any] | None = None, checkpoint: str | Path | None = None, class_label: int | None = None
) -> tuple[list[BlockInfo], ADMConfig]:
    """Every block of model ``name`` and its configuration. Without a checkpoint the table is
    measured on the meta device (no memory); with one, the file is also loaded and checked."""
    if checkpoint is not None:
        bb = load_backbone(name, checkpoint, class_label=class_label, **dict(flags or {}))
        return bb.blocks, bb.config
    _, config = resolve_config(name, flags)
    return list(measure_blocks(config)), config
