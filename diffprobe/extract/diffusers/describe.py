"""Describing a diffusers model without its weights: kind, configurations, forward process, input size.

A :class:`DiffusersConfig` is built from a model directory's configuration files or from a preset's
published ones; the denoiser and VAE are then instantiated on the meta device (no memory) to
measure blocks and to read their complete configurations (diffusers fills in defaults), which are
what a store's identity records.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from diffprobe.errors import CheckpointError, ConfigError
from diffprobe.extract.diffusers.config import WEIGHT_DTYPES, DiffusersConfig, vae_factor
from diffprobe.extract.diffusers.layout import ModelDir, read_json
from diffprobe.extract.diffusers.runner import Runner, runner
from diffprobe.extract.diffusers.schedules import process_fields
from diffprobe.extract.noise import RectifiedFlow
from diffprobe.registry import Registry

#: denoiser class → kind. Older checkpoints save DiT and PixArt as ``Transformer2DModel`` (told apart
#: by their norm type), and SDXL is a ``UNet2DConditionModel`` with added text-time embeddings.
KINDS: Registry[str] = Registry("diffusers denoiser class", error=ConfigError)
for _cls, _kind in (("UNet2DModel", "unet"), ("UNet2DConditionModel", "sd"), ("DiTTransformer2DModel", "dit"),
                    ("SD3Transformer2DModel", "sd3"), ("FluxTransformer2DModel", "flux"), ("SanaTransformer2DModel", "sana"),
                    ("PixArtTransformer2DModel", "pixart")):  # fmt: skip
    KINDS.register(_cls, _kind)
#: ``Transformer2DModel``'s norm type → the class it stands for
_TRANSFORMER_2D: Registry[str] = Registry("Transformer2DModel norm type")
_TRANSFORMER_2D.register("ada_norm_zero", "DiTTransformer2DModel")
_TRANSFORMER_2D.register("ada_norm_single", "PixArtTransformer2DModel")
INSTALL = "pip install 'diffprobe[diffusers]'"
FLAGS = ("image_size", "weights", "max_tokens", "guidance", "null")


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


def kind_of(model: dict[str, Any], where: str) -> tuple[str, str]:
    """(kind, diffusers class) of a denoiser configuration."""
    cls = str(model.get("_class_name", ""))
    if cls == "Transformer2DModel" and model.get("norm_type") in _TRANSFORMER_2D:
        cls = _TRANSFORMER_2D.get(model["norm_type"])
    if cls not in KINDS:
        raise ConfigError(f"{where}: diffprobe reads {', '.join(KINDS)} denoisers; this one is {cls or 'unnamed'}")
    kind = KINDS.get(cls)
    if kind == "sd" and model.get("addition_embed_type") == "text_time":
        kind = "sdxl"
    return kind, cls


def describe(name: str, layout: dict[str, Any] | None, model_dir: ModelDir | None, flags: dict[str, Any]) -> DiffusersConfig:
    """The configuration of a model from its directory, or else from a preset's published ``layout``
    ({"model": …, "scheduler": …, "vae": …, "text": {"len", "dim"}, "condition": {…}}). A preset's
    "condition" (null condition, token count) applies to its directory too; flags override both."""
    unknown = set(flags) - set(FLAGS)
    if unknown:
        raise ConfigError(f"unknown flag(s) {sorted(unknown)} for a diffusers model; valid: {', '.join(FLAGS)}")
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
    run = runner(kind)
    if sched is None:
        raise CheckpointError(f"{where} has no scheduler configuration (scheduler/scheduler_config.json): diffprobe needs the "
                              "training noise schedule; add the scheduler folder of the pipeline the model comes from")  # fmt: skip
    fields = process_fields(sched, where)
    if run.process is not None and fields.get("process", "ddpm") != run.process:
        raise ConfigError(f"{where}: a {cls} is trained with {run.process}, but its scheduler configuration describes "
                          f"{fields.get('process', 'ddpm')}; use the scheduler folder of the model's own pipeline")  # fmt: skip
    if kind != "unet" and vae is None:
        raise CheckpointError(f"{where}: a {cls} works on VAE latents, and there is no vae/ folder with the {run.autoencoder}")
    if kind == "unet" and vae is not None:
        vae = None  # a pixel-space U-Net: a VAE beside it is not part of its input transform
    factor = vae_factor(vae) if vae else 1
    if "sample_size" in model or kind in ("unet", "sd", "dit"):
        native = _side(model.get("sample_size", 64)) * factor
    else:  # Flux's transformer has no size of its own: its VAE's
        native = int(_side(vae.get("sample_size", 1024)))  # type: ignore[union-attr]
    size = int(flags.get("image_size") or native)
    if kind == "dit" and flags.get("image_size") and size != _side(model.get("sample_size", 32)) * factor:
        raise ConfigError(f"DiT runs at the size it was trained at ({_side(model.get('sample_size', 32)) * factor}); drop image_size")
    _check_size(kind, model, size, factor)
    text_len, text_dim = (int(text["len"]), int(text["dim"])) if text else (77, int(_first(model.get("cross_attention_dim") or 0)))
    weights = str(flags.get("weights", "float32"))
    WEIGHT_DTYPES.get(weights)  # an unknown name raises "unknown weights dtype …; valid: …"
    return DiffusersConfig(kind, cls, _dumps(model) or "{}", json.dumps(fields, sort_keys=True), _dumps(vae), size, text_len, text_dim,
                           run.autoencoder or "AutoencoderKL", _text_settings(run, model, model_dir, layout, flags), weights)  # fmt: skip


def _check_size(kind: str, model: dict[str, Any], size: int, factor: int) -> None:
    """The image side fits the network: whole down-samplings of a U-Net, whole patches of a transformer."""
    if kind in ("unet", "sd", "sdxl"):
        n_down = len(model.get("block_out_channels", (1,))) - 1
        step = factor * 2**n_down
        if size % step:
            raise ConfigError(f"image_size {size} must be a multiple of {step} for this model ({n_down} down-samplings"
                              f"{f' after a VAE that divides by {factor}' if factor > 1 else ''})")  # fmt: skip
    elif kind != "dit":
        patch = 2 if kind == "flux" else int(model.get("patch_size", 1))  # Flux packs 2×2 latents into one token
        if size % (factor * patch):
            raise ConfigError(f"image_size {size} must be a multiple of {factor * patch} for this model "
                              f"({patch}×{patch} latent patches after a VAE that divides by {factor})")  # fmt: skip
        most = model.get("pos_embed_max_size")
        if most and size // (factor * patch) > int(most):
            raise ConfigError(f"image_size {size} is too large for this model: at most {int(most) * factor * patch} "
                              f"(its position embedding covers {most}×{most} patches)")  # fmt: skip


def _text_settings(run: Runner, model: dict[str, Any], model_dir: ModelDir | None, layout: dict[str, Any] | None,
                   flags: dict[str, Any]) -> str | None:  # fmt: skip
    """The text conditioning's settings (JSON): the kind's defaults, the preset's, then the flags."""
    given = {k: flags[k] for k in ("null", "max_tokens", "guidance") if k in flags}
    defaults = run.text_defaults(model, model_dir)
    if not defaults:
        if given:
            raise ConfigError(f"flag(s) {sorted(given)} apply to the text-conditioned SDXL, SD3, Flux, SANA and PixArt "
                              f"models; this is a {run.kind} model")  # fmt: skip
        return None
    out = {**defaults, **((layout or {}).get("condition") or {}), **given}
    if out["null"] not in ("empty", "zeros"):
        raise ConfigError(f"null must be 'empty' (the text encoders on the empty prompt) or 'zeros', got {out['null']!r}")
    if not isinstance(out["max_tokens"], int) or out["max_tokens"] < 1:
        raise ConfigError(f"max_tokens must be a positive integer, got {out['max_tokens']!r}")
    if "guidance" in given and "guidance" not in defaults:
        raise ConfigError(f"guidance applies to guidance-distilled models (Flux.1-dev); this {run.kind} model has no guidance embedding")
    if out.get("guidance") is not None:
        out["guidance"] = float(out["guidance"])
    return json.dumps(out, sort_keys=True)


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
        vae = build(cfg.autoencoder, cfg.vae_dict()) if cfg.vae else None
    clean = lambda c: json.loads(_dumps(dict(c)) or "{}")
    return clean(model.config), (clean(vae.config) if vae is not None else None)


def identity(cfg: DiffusersConfig) -> dict[str, Any]:
    """The model's fields of a store's identity."""
    model, vae = canonical(cfg)
    out: dict[str, Any] = {"family": "diffusers", "model_class": cfg.model_class, "model_config": model,
                           "schedule": cfg.scheduler_dict(), "image_size": cfg.image_size}  # fmt: skip
    if vae is not None:
        out["vae_config"] = vae
    if cfg.autoencoder != "AutoencoderKL":
        out["autoencoder"] = cfg.autoencoder
    process = cfg.process()
    if isinstance(process, RectifiedFlow):  # a DDPM model's identity is what it always was: no "process" key
        out.update({"process": process.name, "shift": process.shift, "t_is": "sigma * 1000 before the shift",
                    "sigma_of_t": [float(x) for x in process.sigmas]})  # fmt: skip
    if cfg.weights != "float32":
        out["weights_dtype"] = cfg.weights
    return out


def dir_of(checkpoint: Path | None) -> ModelDir | None:
    return ModelDir.read(checkpoint) if checkpoint is not None else None
