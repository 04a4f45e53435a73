"""Model names → families → a described (:class:`ModelSpec`) or loaded (:class:`Backbone`) model.

A name is a preset (``adm-256-uncond``, ``sd-2.1-base`` …: a family plus a published
configuration) or a family's own name (``adm`` described by flags, ``diffusers`` described by the
checkpoint directory). The families register themselves (:mod:`diffprobe.extract.family`); this
module only dispatches.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

import diffprobe.extract.adm.family  # noqa: F401  (registers the adm family)
import diffprobe.extract.diffusers.family  # noqa: F401  (registers the diffusers family and its presets)
import diffprobe.extract.timm.family  # noqa: F401  (registers the timm family and its presets)
from diffprobe.blocks import BlockInfo
from diffprobe.device import resolve_device
from diffprobe.errors import CheckpointError, ConfigError
from diffprobe.extract.backbone import Backbone
from diffprobe.extract.family import FAMILIES, get_family
from diffprobe.extract.presets import PRESETS, Preset  # PRESETS here lists every family's
from diffprobe.extract.spec import Conditioning, ModelSpec
from diffprobe.registry import unknown_name_message

_HUB_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def hub_name_error(name: str, what: str) -> CheckpointError:
    """The error for a Hugging Face hub name where a local directory is needed."""
    local = name.split("/")[-1]
    return CheckpointError(
        f"{what} {name!r} looks like a Hugging Face hub name, not a local directory; diffprobe never downloads. "
        f"Download it first (`hf download {name} --local-dir {local}`, with huggingface_hub installed) and pass "
        f"--checkpoint {local}"
    )


def _preset_and_family(name: str) -> tuple[Preset | None, str]:
    if name in FAMILIES:
        return None, name
    if name not in PRESETS and _HUB_NAME.match(name):
        raise hub_name_error(name, "model")
    if name not in PRESETS:
        raise ConfigError(unknown_name_message("model", name, model_names(), "see `diffprobe models`"))
    preset = PRESETS.get(name)
    return preset, preset.family


def model_spec(name: str, flags: Mapping[str, Any] | None = None, checkpoint: str | Path | None = None) -> ModelSpec:
    """Describe model ``name`` with ``flags`` applied (no weights are loaded; blocks are measured
    on the meta device). ``checkpoint`` matters only to families described by their checkpoint
    (a diffusers directory)."""
    preset, family = _preset_and_family(name)
    path = Path(checkpoint).expanduser() if checkpoint is not None else None
    return get_family(family).spec(name, preset, dict(flags or {}), path)


def default_timesteps(name: str, flags: Mapping[str, Any] | None = None, checkpoint: str | Path | None = None) -> tuple[int, ...]:
    """The timesteps when none are given: (0,) for a model without noise (timm); for a diffusion
    model it is an error that asks for them."""
    spec = model_spec(name, flags, checkpoint)
    if not spec.noised:
        return (0,)
    raise ConfigError(f"pass --t: the timesteps to noise the images at, e.g. --t 90 ({spec.name} has t in 0..{spec.steps - 1})")


def resolve_checkpoint(name: str, preset: Preset | None, checkpoint: str | Path | None, random_weights: bool = False) -> Path | None:
    """The weights model ``name`` loads: the file or directory given, else the checkpoint bundled
    with its preset; None (random weights) only when asked for.

    Raises:
        ConfigError: both a checkpoint and random weights.  CheckpointError: no checkpoint to use
            (the message says where to get one).
    """
    if checkpoint is not None:
        if random_weights:
            raise ConfigError("expected --checkpoint or --random-weights, not both")
        path = Path(checkpoint).expanduser()
        if not path.exists() and _HUB_NAME.match(str(checkpoint)):
            raise hub_name_error(str(checkpoint), "checkpoint")
        return path
    if random_weights:
        return None
    if preset is not None and preset.bundled_checkpoint is not None:
        return preset.bundled_checkpoint
    how = preset.how_to_get() if preset else "pass the checkpoint that your --flags describe"
    if preset is None and name != "adm":
        how = f"{name} models are described by their checkpoint: pass --checkpoint DIR"
    raise CheckpointError(
        f"{name} needs its weights: {how} and pass it with --checkpoint PATH (diffprobe never downloads); "
        "or pass --random-weights for a randomly initialised network (tests and benchmarks only)"
    )


def check_model(name: str, flags: Mapping[str, Any], checkpoint: str | Path | None, random_weights: bool,
                cond: Conditioning) -> tuple[ModelSpec, Path | None]:  # fmt: skip
    """Everything about a model that can be checked without loading it: the description, the
    checkpoint (resolved; it exists and its tensors fit — read memory-mapped, so cheap even for the
    256 model) and the conditioning.

    Returns:
        (the model's spec, the checkpoint path or None for random weights).
    """
    preset, family = _preset_and_family(name)
    path = resolve_checkpoint(name, preset, checkpoint, random_weights)
    fam = get_family(family)
    spec = fam.spec(name, preset, dict(flags), path)
    fam.check(spec, path, cond)
    return spec, path


def store_identity(spec: ModelSpec, checkpoint: Path | None, cond: Conditioning) -> dict[str, Any]:
    """The model's fields of a store's identity: name, family fields, weights hash, conditioning."""
    fam = get_family(spec.family)
    sha = fam.checkpoint_sha256(spec, checkpoint, cond) if checkpoint is not None else None
    return {"model": spec.name, **spec.identity, "checkpoint_sha256": sha, **fam.cond_identity(spec, cond)}


def load_backbone(
    name: str,
    checkpoint: str | Path | None = None,
    *,
    random_weights: bool = False,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    class_label: int | None = None,
    prompt: str | None = None,
    prompt_embedding: str | None = None,
    **flags: Any,
) -> Backbone:
    """Build a backbone by model name and load its weights.

    Args:
        name: a preset (``adm-256-uncond``, ``adm-32-fmnist``, ``sd-2.1-base`` … see
            ``diffprobe.PRESETS``), ``adm`` (architecture from guided-diffusion flags alone) or
            ``diffusers`` (architecture from the checkpoint directory).
        checkpoint: a state-dict file (ADM) or a model directory in diffusers' format; None: the
            checkpoint bundled with the preset (``adm-32-fmnist``), else an error that says where to
            get one.
        random_weights: no checkpoint: PyTorch's default initialisers, seeded (tests, benchmarks).
        device: where the weights live (a name or torch device; see :func:`diffprobe.device.resolve_device`).
        dtype: the weights' dtype.
        class_label: the single class fed to a class-conditional model for every image.
        prompt, prompt_embedding: a text-conditioned model's prompt (default: the empty prompt) or
            a file with its embedding.
        **flags: the family's flags (ADM: guided-diffusion flags such as ``image_size=64``).

    Raises:
        ConfigError: unknown model or flag.
        CheckpointError: the checkpoint is missing, unsafe, or does not fit (the message says why).
    """
    cond = Conditioning(class_label, prompt, prompt_embedding)
    spec, path = check_model(name, flags, checkpoint, random_weights, cond)
    return get_family(spec.family).load(spec, path, resolve_device(device), dtype, cond)


def create_backbone(name: str, checkpoint: str | Path | None = None, **kwargs: Any) -> Backbone:
    """Alias of :func:`load_backbone` (the registry's constructor name in design.md)."""
    return load_backbone(name, checkpoint, **kwargs)


def model_names() -> list[str]:
    """Every name :func:`load_backbone` accepts."""
    return [*PRESETS.names(), *FAMILIES.names()]


def block_table(name: str, flags: Mapping[str, Any] | None = None, checkpoint: str | Path | None = None) -> tuple[list[BlockInfo], ModelSpec]:
    """Every block of model ``name`` and its spec, measured on the meta device (nothing is loaded;
    a diffusers directory's configuration files are read)."""
    spec = model_spec(name, flags, checkpoint)
    return list(spec.blocks), spec
