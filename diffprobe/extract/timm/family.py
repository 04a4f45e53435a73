"""The ``timm`` family: describe, check and load a timm model from a local file or directory.

``--model timm --flags arch=NAME`` takes any timm architecture (``--checkpoint DIR`` with the hub's
``config.json`` names it by itself); the presets (:mod:`.presets`) carry the paper's baselines.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

import diffprobe.extract.timm.presets  # noqa: F401  (registers the presets)
from diffprobe.errors import CheckpointError, CheckpointNotFoundError, ConfigError
from diffprobe.extract.checkpoint import file_sha256, fit_problems, read_state_dict
from diffprobe.extract.family import Family, WeightBytes, parameter_bytes, register_family
from diffprobe.extract.spec import Conditioning, ModelSpec
from diffprobe.extract.timm.describe import TimmConfig, build, describe, identity, measure_blocks, weights_in

if TYPE_CHECKING:
    from diffprobe.extract.backbone import Backbone
    from diffprobe.extract.presets import Preset

log = logging.getLogger(__name__)

#: Seed of random weights (``random_weights=True``), so that they are the same on every run.
RANDOM_INIT_SEED = 0


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from a ``.safetensors`` file or a pickle-free torch checkpoint."""
    if not path.exists():
        raise CheckpointNotFoundError(f"checkpoint not found: {path}; check the path")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return dict(load_file(str(path)))
        except (SafetensorError, OSError, ValueError) as e:
            raise CheckpointError(f"cannot read {path} as safetensors: {e}") from None
    return read_state_dict(path)


def _classifier_keys(net: Any, sd: Mapping[str, torch.Tensor]) -> list[str]:
    """The checkpoint's classifier tensors: diffprobe builds the model without its classifier."""
    names = net.pretrained_cfg.get("classifier") or ()
    names = (names,) if isinstance(names, str) else tuple(names)
    return [k for k in sd if any(k == n or k.startswith(n + ".") for n in names)]


def fit(net: Any, sd: dict[str, torch.Tensor], path: Path) -> dict[str, torch.Tensor]:
    """``sd`` made to fit ``net``: timm's own conversion of released formats (the model module's
    ``checkpoint_filter_fn``) when its keys do not match, the classifier dropped.

    Raises:
        CheckpointError: missing, unexpected or misshapen tensors (the message lists the first).
    """
    expected = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    if not set(expected) <= set(sd):
        convert = getattr(sys.modules.get(type(net).__module__), "checkpoint_filter_fn", None)
        if convert is not None:
            try:
                sd = dict(convert(sd, net))
            except Exception as e:  # the conversion is timm's and raises what it raises
                log.debug("timm's checkpoint conversion failed: %s", e)
    head = set(_classifier_keys(net, sd))
    sd = {k: v for k, v in sd.items() if k not in head}
    problems = fit_problems(expected, {k: tuple(v.shape) for k, v in sd.items()}, path)
    if problems:
        arch = net.pretrained_cfg.get("architecture")
        raise CheckpointError("\n".join([*problems, f"  hint: the model is timm's {arch}; check --flags arch=… and its keyword flags (img_size, depth …)"]))
    return sd


@register_family
class TimmFamily(Family):
    """Image models from timm: no noise, no timestep; blocks are the model's ``feature_info``."""

    name = "timm"
    flags_help = ("arch=NAME (a timm model, e.g. vit_base_patch16_224.mae), features=map|cls, input_size=N, crop_pct=F, "
                  "and any timm.create_model keyword (img_size=…)")  # fmt: skip

    def spec(self, model: str, preset: Preset | None, flags: Mapping[str, Any], checkpoint: Path | None) -> ModelSpec:
        cfg = describe(model, preset.config if preset else None, dict(flags), checkpoint)
        return ModelSpec(model, self.name, cfg, cfg.scale_size, 1, (3, cfg.input_size, cfg.input_size), measure_blocks(cfg),
                         identity=identity(cfg))  # fmt: skip

    def weights(self, spec: ModelSpec, checkpoint: Path | None, cond: Conditioning, dtype: torch.dtype) -> WeightBytes:
        return WeightBytes({"model": parameter_bytes(build(spec.config, meta=True), dtype)}, {})

    def check(self, spec: ModelSpec, checkpoint: Path | None, cond: Conditioning) -> None:
        if cond.class_label is not None or cond.prompt or cond.prompt_embedding:
            raise ConfigError(f"{spec.name} is an image model without conditioning: drop --class-label, --prompt and --prompt-embedding")
        if checkpoint is not None:
            path = weights_in(checkpoint)
            if not path.exists():
                raise CheckpointNotFoundError(f"checkpoint not found: {path}; check the path")
            fit(build(spec.config, meta=True), read_weights(path), path)

    def cond_identity(self, spec: ModelSpec, cond: Conditioning) -> dict[str, Any]:
        return {}

    def checkpoint_sha256(self, spec: ModelSpec, checkpoint: Path, cond: Conditioning) -> str:
        return file_sha256(weights_in(checkpoint))

    def load(self, spec: ModelSpec, checkpoint: Path | None, device: torch.device, dtype: torch.dtype, cond: Conditioning) -> Backbone:
        from diffprobe.extract.timm.backbone import TimmBackbone

        cfg: TimmConfig = spec.config
        if checkpoint is None:
            with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                torch.manual_seed(RANDOM_INIT_SEED)
                net = build(cfg).to(dtype)
            log.warning("%s has random weights (--random-weights): its features say nothing about a trained model", spec.name)
            return TimmBackbone(spec, net.to(device).eval())
        path = weights_in(checkpoint)
        with torch.device("meta"):
            net = build(cfg, meta=True)
        sd = fit(net, read_weights(path), path)
        net.load_state_dict({k: v.to(device=device, dtype=dtype) for k, v in sd.items()}, strict=True, assign=True)
        sha = self.checkpoint_sha256(spec, checkpoint, cond)
        log.info("loaded %s (timm %s) from %s (sha256 %s…)", spec.name, cfg.arch, path, sha[:12])
        return TimmBackbone(spec, net.eval(), checkpoint, sha)
