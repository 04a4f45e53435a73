"""Describing a diffusers model without its weights: kind, configurations, schedule, input size.

A :class:`DiffusersConfig` is built from a model directory's configuration files or from a preset's
published ones; the denoiser and VAE are then instantiated on the meta device (no memory) to
measure blocks and to read their complete configurations (diffusers fills in defaults), which are
what a store's identity records.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch

from diffprobe.errors import CheckpointError, ConfigError
from diffprobe.extract.diffusers.layout import ModelDir, read_json
from diffprobe.extract.noise import NoiseSchedule

#: denoiser class → kind (Transformer2DModel with ada_norm_zero is DiT as older checkpoints save it)
KINDS = {"UNet2DModel": "unet", "UNet2DConditionModel": "sd", "DiTTransformer2DModel": "dit"}
INSTALL = "pip install 'diffprobe[diffusers]'"
SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")


def import_diffusers() -> ModuleType:
    """The ``diffusers`` package, or an error that says how to install it."""
    try:
        import diffusers
    except ImportError as e:
        raise ConfigError(f"diffusers models need the optional dependency diffusers ({e}); install it: {INSTALL}") from None
    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()
    return diffusers


def _dumps(d: dict[str, Any] | None) -> str | None:
    return None if d is None else json.dumps({k: v for k, v in d.items() if not k.startswith("_")}, sort_keys=True, default=list)


@dataclass(frozen=True)
class DiffusersConfig:
    """What defines a diffusers model's architecture and noising, as JSON strings (hashable).

    Attributes:
        kind: "unet" (pixel DDPM), "sd" (latent, text-conditioned) or "dit" (latent, class-conditioned).
        model_class: the denoiser's diffusers class.
        model, scheduler, vae: configurations (keys starting with "_" dropped).
        image_size: the pixel side images are resized to.
        text_len, text_dim: the prompt embedding's shape (L, D) for "sd".
    """

    kind: str
    model_class: str
    model: str
    scheduler: str
    vae: str | None
    image_size: int
    text_len: int = 77
    text_dim: int = 0

    def model_dict(self) -> dict[str, Any]:
        return dict(json.loads(self.model))

    def vae_dict(self) -> dict[str, Any]:
        return dict(json.loads(self.vae)) if self.vae else {}

    def scheduler_dict(self) -> dict[str, Any]:
        return dict(json.loads(self.scheduler))

    @property
    def latent(self) -> bool:
        return self.vae is not None

    @property
    def vae_factor(self) -> int:
        """Pixels per latent along each side (2 per VAE down-block after the first)."""
        return 2 ** (len(self.vae_dict()["block_out_channels"]) - 1) if self.vae else 1

    @property
    def noise_shape(self) -> tuple[int, int, int]:
        side = self.image_size // self.vae_factor
        channels = self.vae_dict()["latent_channels"] if self.vae else self.model_dict().get("in_channels", 3)
        return int(channels), side, side


def kind_of(model: dict[str, Any], where: str) -> tuple[str, str]:
    """(kind, diffusers class) of a denoiser configuration."""
    cls = str(model.get("_class_name", ""))
    if cls == "Transformer2DModel" and model.get("norm_type") == "ada_norm_zero":
        cls = "DiTTransformer2DModel"
    if cls not in KINDS:
        raise ConfigError(f"{where}: diffprobe reads {', '.join(KINDS)} denoisers; this one is {cls or 'unnamed'}")
    return KINDS[cls], cls


def schedule_fields(sched: dict[str, Any]) -> dict[str, Any]:
    """The fields of a scheduler configuration that define the training noise (β_t)."""
    keys = ("num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "trained_betas", "rescale_betas_zero_snr")
    defaults = {"num_train_timesteps": 1000, "beta_start": 0.0001, "beta_end": 0.02, "beta_schedule": "linear",
                "trained_betas": None, "rescale_betas_zero_snr": False}  # fmt: skip
    return {k: sched.get(k, defaults[k]) for k in keys}


def make_schedule(fields: dict[str, Any]) -> NoiseSchedule:
    """The β schedule a diffusers scheduler configuration describes (computed in float32 as diffusers
    does; ᾱ_t accumulated in float64)."""
    steps = int(fields["num_train_timesteps"])
    kind = fields["beta_schedule"]
    if fields.get("trained_betas") is not None:
        betas = np.asarray(fields["trained_betas"], dtype=np.float32)
    elif kind == "linear":
        betas = torch.linspace(fields["beta_start"], fields["beta_end"], steps, dtype=torch.float32).numpy()
    elif kind == "scaled_linear":
        betas = (torch.linspace(fields["beta_start"] ** 0.5, fields["beta_end"] ** 0.5, steps, dtype=torch.float32) ** 2).numpy()
    elif kind == "squaredcos_cap_v2":  # Nichol & Dhariwal's cosine ᾱ, β capped at 0.999
        f = lambda u: np.cos((u + 0.008) / 1.008 * np.pi / 2) ** 2
        i = np.arange(steps, dtype=np.float64)
        betas = np.minimum(1 - f((i + 1) / steps) / f(i / steps), 0.999).astype(np.float32)
    else:
        raise ConfigError(f"noise schedule {kind!r} is not supported; diffprobe reads {', '.join(SCHEDULES)} (or trained_betas)")
    betas = betas.astype(np.float64)
    if fields.get("rescale_betas_zero_snr"):  # Lin et al. 2024, algorithm 1: shift and scale sqrt(ᾱ) so that ᾱ_T = 0
        a = np.sqrt(np.cumprod(1 - betas))
        a = (a - a[-1]) * a[0] / (a[0] - a[-1])
        abar = a**2
        betas = 1 - np.concatenate([abar[:1], abar[1:] / abar[:-1]])
    return NoiseSchedule(f"diffusers-{kind}", steps, betas)


def describe(name: str, layout: dict[str, Any] | None, model_dir: ModelDir | None, flags: dict[str, Any]) -> DiffusersConfig:
    """The configuration of a model from its directory, or else from a preset's published ``layout``
    ({"model": …, "scheduler": …, "vae": …, "text": {"len", "dim"}})."""
    unknown = set(flags) - {"image_size"}
    if unknown:
        raise ConfigError(f"unknown flag(s) {sorted(unknown)} for a diffusers model; valid: image_size")
    if model_dir is not None:
        model = read_json(model_dir.denoiser / "config.json")
        where = str(model_dir.root)
        sched = read_json(model_dir.scheduler) if model_dir.scheduler else None
        vae = read_json(model_dir.vae / "config.json") if model_dir.vae and (model_dir.vae / "config.json").is_file() else None
        text = _text_shape(model_dir)
    elif layout is not None:
        model, sched, vae, text = layout["model"], layout.get("scheduler"), layout.get("vae"), layout.get("text")
        where = name
    else:
        raise CheckpointError(f"{name}: a diffusers model is described by its directory: pass --checkpoint DIR")
    kind, cls = kind_of(model, where)
    if sched is None:
        raise CheckpointError(f"{where} has no scheduler configuration (scheduler/scheduler_config.json): diffprobe needs the "
                              "training noise schedule; add the scheduler folder of the pipeline the model comes from")  # fmt: skip
    if kind != "unet" and vae is None:
        raise CheckpointError(f"{where}: a {cls} works on VAE latents, and there is no vae/ folder with the AutoencoderKL")
    if kind == "unet" and vae is not None:
        vae = None  # a pixel-space U-Net: a VAE beside it is not part of its input transform
    factor = 2 ** (len(vae["block_out_channels"]) - 1) if vae else 1
    size = int(flags.get("image_size") or _side(model.get("sample_size", 64)) * factor)
    if kind == "dit" and flags.get("image_size") and size != _side(model.get("sample_size", 32)) * factor:
        raise ConfigError(f"DiT runs at the size it was trained at ({_side(model.get('sample_size', 32)) * factor}); drop image_size")
    if kind in ("unet", "sd"):
        n_down = len(model.get("block_out_channels", (1,))) - 1
        step = factor * 2**n_down
        if size % step:
            raise ConfigError(f"image_size {size} must be a multiple of {step} for this model ({n_down} down-samplings"
                              f"{f' after a VAE that divides by {factor}' if factor > 1 else ''})")  # fmt: skip
    text_len, text_dim = (int(text["len"]), int(text["dim"])) if text else (77, int(_first(model.get("cross_attention_dim") or 0)))
    return DiffusersConfig(kind, cls, _dumps(model) or "{}", json.dumps(schedule_fields(sched), sort_keys=True), _dumps(vae),
                           size, text_len, text_dim)  # fmt: skip


def _side(sample_size: Any) -> int:
    return int(_first(sample_size))


def _first(v: Any) -> Any:
    return v[0] if isinstance(v, (list, tuple)) else v


def _text_shape(d: ModelDir) -> dict[str, int] | None:
    if d.text_encoder is None or not (d.text_encoder / "config.json").is_file():
        return None
    enc = read_json(d.text_encoder / "config.json")
    length = enc.get("max_position_embeddings", 77)
    if d.tokenizer is not None and (d.tokenizer / "tokenizer_config.json").is_file():
        length = min(length, int(read_json(d.tokenizer / "tokenizer_config.json").get("model_max_length", length)))
    return {"len": int(length), "dim": int(enc.get("hidden_size", enc.get("projection_dim", 0)))}


def build(cls_name: str, config: dict[str, Any]) -> torch.nn.Module:
    """An instance of diffusers class ``cls_name`` from ``config`` (on the current default device)."""
    cls = getattr(import_diffusers(), cls_name)
    return cls.from_config(config)


@lru_cache(maxsize=16)
def canonical(cfg: DiffusersConfig) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The denoiser's and the VAE's complete configurations, defaults filled in by diffusers."""
    with torch.device("meta"):
        model = build(cfg.model_class, cfg.model_dict())
        vae = build("AutoencoderKL", cfg.vae_dict()) if cfg.vae else None
    clean = lambda c: json.loads(_dumps(dict(c)) or "{}")
    return clean(model.config), (clean(vae.config) if vae is not None else None)


def identity(cfg: DiffusersConfig) -> dict[str, Any]:
    """The model's fields of a store's identity."""
    model, vae = canonical(cfg)
    out: dict[str, Any] = {"family": "diffusers", "model_class": cfg.model_class, "model_config": model,
                           "schedule": cfg.scheduler_dict(), "image_size": cfg.image_size}  # fmt: skip
    if vae is not None:
        out["vae_config"] = vae
    return out


def dir_of(checkpoint: Path | None) -> ModelDir | None:
    return ModelDir.read(checkpoint) if checkpoint is not None else None
