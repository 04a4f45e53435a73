"""Describing a timm model without its weights: architecture, input transform, blocks.

A :class:`TimmConfig` comes from, in order of precedence, ``--flags``, the checkpoint directory's
``config.json`` (as the hub stores timm models), and a preset. The model is then built on the meta
device to read its pretrained data configuration and to measure its blocks.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from diffprobe.blocks import BlockInfo
from diffprobe.errors import CheckpointError, ConfigError
from diffprobe.extract.hooks import BlockTap
from diffprobe.keyvalue import load_pairs

INSTALL = "pip install 'diffprobe[timm]'"
#: diffprobe's own flags; every other flag is a keyword argument of ``timm.create_model``
OWN_FLAGS = ("arch", "features", "input_size", "crop_pct")
FEATURES = ("map", "cls")
#: names of the hub layout's files: its configuration and weights (safetensors first)
CONFIG_NAME = "config.json"
WEIGHT_NAMES = ("model.safetensors", "pytorch_model.bin", "open_clip_model.safetensors", "open_clip_pytorch_model.bin")


def import_timm() -> ModuleType:
    """The ``timm`` package, or an error that says how to install it."""
    try:
        import timm
    except ImportError as e:
        raise ConfigError(f"timm models need the optional dependency timm ({e}); install it: {INSTALL}") from None
    except Exception as e:  # a torchvision built for another torch fails with RuntimeError
        raise ConfigError(f"timm failed to import ({type(e).__name__}: {str(e).splitlines()[0][:200]}); its torchvision "
                          "must be built for the installed torch (install matching versions of both)") from None  # fmt: skip
    return timm


@dataclass(frozen=True)
class TimmConfig:
    """A timm model as far as diffprobe needs it (hashable: its fields are what a store records).

    Attributes:
        arch: the timm model name, with its pretrained tag (``vit_base_patch16_224.mae``).
        kwargs: JSON of the extra ``timm.create_model`` keyword arguments (``{"img_size": 32}``).
        features: ``map`` (spatial tokens or feature maps) or ``cls`` (a ViT's class token, (D, 1, 1)).
        input_size: the side of the square crop the model sees.
        scale_size: the side images are resized and centre-cropped to before that crop
            (input_size / crop_pct, as timm's evaluation transform).
        mean, std: the per-channel normalisation of pixels in [0, 1].
        interpolation: timm's resize interpolation (recorded; diffprobe's loader resizes bicubic).
    """

    arch: str
    kwargs: str
    features: str
    input_size: int
    scale_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str

    def kwargs_dict(self) -> dict[str, Any]:
        return dict(json.loads(self.kwargs))


def weights_in(path: Path) -> Path:
    """The weight file of a checkpoint: the file itself, or the weights in a hub-layout directory."""
    if not path.is_dir():
        return path
    for name in WEIGHT_NAMES:
        if (path / name).is_file():
            return path / name
    have = ", ".join(sorted(p.name for p in path.iterdir())[:8]) or "nothing"
    raise CheckpointError(f"no weights in {path}: expected one of {', '.join(WEIGHT_NAMES)} (it has {have})")


def _hub_config(checkpoint: Path | None) -> dict[str, Any]:
    if checkpoint is None or not checkpoint.is_dir() or not (checkpoint / CONFIG_NAME).is_file():
        return {}
    try:
        return dict(json.loads((checkpoint / CONFIG_NAME).read_text()))
    except (OSError, ValueError) as e:
        raise CheckpointError(f"cannot read {checkpoint / CONFIG_NAME} as a timm configuration: {e}") from None


def _plain(v: Any) -> Any:
    return list(v) if isinstance(v, tuple) else v


def describe(name: str, preset: dict[str, Any] | None, flags: dict[str, Any], checkpoint: Path | None) -> TimmConfig:
    """The configuration of model ``name`` from flags, the checkpoint directory and a preset
    (``{"arch": …, "kwargs": {…}}``)."""
    hub = _hub_config(checkpoint)
    arch = flags.get("arch") or hub.get("architecture") or (preset or {}).get("arch")
    if not arch:
        raise ConfigError(f"{name}: say which timm architecture with --flags arch=NAME (e.g. arch=vit_base_patch16_224.mae), "
                          "or pass --checkpoint DIR holding the hub's config.json")  # fmt: skip
    kwargs: dict[str, Any] = {**(preset or {}).get("kwargs", {}), **hub.get("model_args", {})}
    kwargs.update({k: list(v) if isinstance(v, tuple) else v for k, v in load_pairs(dict(flags)).items() if k not in OWN_FLAGS})
    for k in ("num_classes", "pretrained", "pretrained_cfg", "checkpoint_path"):
        kwargs.pop(k, None)  # diffprobe builds the feature extractor itself, without a classifier
    features = str(flags.get("features", "map"))
    if features not in FEATURES:
        raise ConfigError(f"features must be one of {', '.join(FEATURES)}, got {features!r}")
    data = _data_config(str(arch), json.dumps({k: _plain(v) for k, v in sorted(kwargs.items())}), hub.get("pretrained_cfg"))
    size = int(flags.get("input_size") or kwargs.get("img_size") and _side(kwargs["img_size"]) or data["input_size"])
    crop = float(flags.get("crop_pct") or data["crop_pct"] or 1.0)
    if not 0 < crop <= 1:
        raise ConfigError(f"crop_pct must be in (0, 1], got {crop}")
    return TimmConfig(str(arch), json.dumps({k: _plain(v) for k, v in sorted(kwargs.items())}), features, size,
                      int(math.floor(size / crop)), tuple(data["mean"]), tuple(data["std"]), str(data["interpolation"]))  # type: ignore[arg-type]  # fmt: skip


def _side(v: Any) -> int:
    return int(v[0] if isinstance(v, (list, tuple)) else v)


def _data_config(arch: str, kwargs: str, hub_cfg: dict[str, Any] | None) -> dict[str, Any]:
    """input_size (side), crop_pct, mean, std, interpolation: the hub's config, else the model's own."""
    cfg = dict(build(TimmConfig(arch, kwargs, "map", 0, 0, (0, 0, 0), (1, 1, 1), ""), meta=True).pretrained_cfg)
    cfg.update(hub_cfg or {})
    return {"input_size": _side(cfg.get("input_size", (3, 224, 224))[1:]), "crop_pct": cfg.get("crop_pct"),
            "mean": [float(v) for v in cfg.get("mean", (0.485, 0.456, 0.406))],
            "std": [float(v) for v in cfg.get("std", (0.229, 0.224, 0.225))], "interpolation": cfg.get("interpolation", "bicubic")}  # fmt: skip


def build(cfg: TimmConfig, meta: bool = False) -> Any:
    """``timm.create_model(arch, pretrained=False, num_classes=0, **kwargs)`` (on the meta device
    when ``meta``, else on the current default device)."""
    timm = import_timm()
    try:
        if meta:
            with torch.device("meta"):
                return timm.create_model(cfg.arch, pretrained=False, num_classes=0, **cfg.kwargs_dict()).eval()
        return timm.create_model(cfg.arch, pretrained=False, num_classes=0, **cfg.kwargs_dict()).eval()
    except RuntimeError as e:
        if "Unknown model" in str(e):
            raise ConfigError(f"timm has no model {cfg.arch!r} (timm.list_models('{cfg.arch.split('.')[0][:6]}*') lists similar ones)") from None
        raise ConfigError(f"timm cannot build {cfg.arch} with {cfg.kwargs}: {str(e).splitlines()[0][:200]}") from None
    except TypeError as e:
        raise ConfigError(f"timm cannot build {cfg.arch} with {cfg.kwargs}: {e} (check the --flags)") from None


def units(net: Any) -> list[tuple[str, torch.nn.Module]]:
    """(module path, module) of every block: the model's ``feature_info`` (its intermediate outputs)."""
    info = getattr(net, "feature_info", None)
    if not info:
        raise ConfigError(f"{type(net).__name__} declares no feature_info: diffprobe reads timm models through their intermediate outputs")
    mods = dict(net.named_modules())
    return [(str(i["module"]), mods[str(i["module"])]) for i in info]


def token_layout(net: Any, features: str) -> tuple[int, tuple[int, int] | None]:
    """(prefix tokens, token grid) of a ViT-like model; grid None for models with feature maps."""
    grid = getattr(getattr(net, "patch_embed", None), "grid_size", None)
    prefix = int(getattr(net, "num_prefix_tokens", 0))
    if features == "cls" and (grid is None or prefix == 0):
        raise ConfigError(f"features=cls needs a ViT with a class token; {type(net).__name__} has none (use features=map)")
    return prefix, (int(grid[0]), int(grid[1])) if grid is not None else None


def to_map(net: Any, features: str) -> Any:
    """Block output → (N, C, H, W): tokens to their grid (prefix tokens dropped), or the class
    token as a 1×1 map; NHWC maps transposed; NCHW maps as they are."""
    prefix, grid = token_layout(net, features)
    nhwc = getattr(net, "output_fmt", "NCHW") == "NHWC"

    def convert(x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 3 and features == "cls":
            return x[:, 0, :, None, None]
        if x.dim() == 3:
            if grid is None:
                raise ValueError(f"a block returned tokens {tuple(x.shape)}, but the model has no patch grid")
            n, _, d = x.shape
            return x[:, prefix:, :].transpose(1, 2).reshape(n, d, *grid)
        return x.permute(0, 3, 1, 2) if nhwc else x

    return convert


@lru_cache(maxsize=16)
def measure_blocks(cfg: TimmConfig) -> tuple[BlockInfo, ...]:
    """Every block's output shape, from a forward on the meta device (no memory)."""
    net = build(cfg, meta=True)
    us = units(net)
    tap = BlockTap([m for _, m in us], to_map(net, cfg.features))
    with torch.device("meta"):
        x = torch.empty(1, 3, cfg.input_size, cfg.input_size)
        _, feats = tap.run(lambda: net.forward_features(x), range(1, len(us) + 1))
    return tuple(BlockInfo(i, path, int(feats[i].shape[1]), int(feats[i].shape[2]), int(feats[i].shape[3]), "layer")
                 for i, (path, _) in enumerate(us, start=1))  # fmt: skip


def identity(cfg: TimmConfig) -> dict[str, Any]:
    """The store-identity fields of a timm model (no noise: there is no schedule)."""
    return {"family": "timm", "noise": "none", "timm": {"arch": cfg.arch, "kwargs": cfg.kwargs_dict(), "features": cfg.features,
            "input": {"size": cfg.input_size, "scale_size": cfg.scale_size, "mean": list(cfg.mean), "std": list(cfg.std)}}}  # fmt: skip
