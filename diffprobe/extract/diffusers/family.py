"""The ``diffusers`` family: describe, check and load a model in diffusers' format.

``--model diffusers --checkpoint DIR`` reads any supported model from its directory; the presets
(:mod:`.presets`) carry the published configurations, so that ``diffprobe blocks sd-2.1-base``
works before anything is downloaded, and a preset's weights are still read from ``--checkpoint DIR``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

import diffprobe.extract.diffusers.presets  # noqa: F401  (registers the presets)
import diffprobe.extract.diffusers.presets_2024  # noqa: F401  (registers SDXL, SD3, Flux, SANA and PixArt)
from diffprobe.blocks import BlockInfo
from diffprobe.errors import CheckpointError, ConfigError
from diffprobe.extract.checkpoint import file_sha256
from diffprobe.extract.diffusers.config import DiffusersConfig
from diffprobe.extract.diffusers.describe import build, describe, dir_of, identity, import_diffusers
from diffprobe.extract.diffusers.latents import encoder_only
from diffprobe.extract.diffusers.layout import ModelDir, tree_sha256, uses_safetensors, weight_files
from diffprobe.extract.diffusers.runner import runner
from diffprobe.extract.family import Family, WeightBytes, parameter_bytes, register_family
from diffprobe.extract.spec import Conditioning, ModelSpec

if TYPE_CHECKING:
    from diffprobe.extract.backbone import Backbone
    from diffprobe.extract.presets import Preset

log = logging.getLogger(__name__)

#: Seed of random weights (``random_weights=True``), so that they are the same on every run.
RANDOM_INIT_SEED = 0


@lru_cache(maxsize=16)
def measure_blocks(cfg: DiffusersConfig) -> tuple[BlockInfo, ...]:
    """Every block's output shape, from a forward on the meta device (no memory)."""
    run = runner(cfg.kind)
    with torch.device("meta"):
        net: Any = build(cfg.model_class, cfg.model_dict())
        units = run.units(net)
        tap = run.tap(net, cfg)
        kw = run.meta_inputs(net, cfg)
        _, feats = tap.run(lambda: net(**kw), range(1, len(units) + 1))
    out = []
    for i, (path, _, stage) in enumerate(units, start=1):
        _, c, h, w = feats[i].shape
        out.append(BlockInfo(i, path, int(c), int(h), int(w), stage))
    return tuple(out)


def _text_parts(cfg: DiffusersConfig, cond: Conditioning) -> tuple[str, ...]:
    """The text encoder folders the condition is computed with (none for zeros or an embedding file)."""
    run = runner(cfg.kind)
    if not run.text_conditioned or cond.prompt_embedding:
        return ()
    if cfg.kind == "sd":
        return ("text_encoder",)
    if not cond.text and cfg.text_dict()["null"] == "zeros":
        return ()
    return getattr(run, "text_parts", ())


def _components(cfg: DiffusersConfig, d: ModelDir, cond: Conditioning) -> list[Path]:
    """The files that shape the values: configs and weights of the denoiser and VAE, the scheduler
    configuration, and the text encoders and tokenizers that embed the prompt."""
    files = [d.denoiser / "config.json", *weight_files(d.denoiser)]
    if d.scheduler:
        files.append(d.scheduler)
    if cfg.latent and d.vae:
        files += [d.vae / "config.json", *weight_files(d.vae)]
    for part in _text_parts(cfg, cond):
        enc, tok = d.part(part), d.part(part.replace("text_encoder", "tokenizer"))
        if enc is not None and tok is not None:
            files += [enc / "config.json", *weight_files(enc)]
            files += [p for p in sorted(tok.iterdir()) if p.is_file()]
    return files


@register_family
class DiffusersFamily(Family):
    """Models in diffusers' format: UNet2DModel; SD 1.x/2.x, SDXL, SD3/3.5, Flux.1, SANA, PixArt-α/Σ
    and DiT with their autoencoders."""

    name = "diffusers"
    flags_help = ("image_size=N: resize images to N instead of the model's own size; weights=bfloat16|float16: load the "
                  "weights in that dtype; null=empty|zeros, max_tokens=N, guidance=G: the text condition of SDXL, SD3, "
                  "Flux, SANA and PixArt models")  # fmt: skip

    def spec(self, model: str, preset: Preset | None, flags: Mapping[str, Any], checkpoint: Path | None) -> ModelSpec:
        d = dir_of(checkpoint)
        cfg = describe(model, preset.config if preset else None, d, dict(flags))
        steps = int(cfg.scheduler_dict()["num_train_timesteps"])
        return ModelSpec(model, self.name, cfg, cfg.image_size, steps, cfg.noise_shape, measure_blocks(cfg), identity=identity(cfg))

    def check(self, spec: ModelSpec, checkpoint: Path | None, cond: Conditioning) -> None:
        cfg: DiffusersConfig = spec.config
        run = runner(cfg.kind)
        if not run.text_conditioned and (cond.prompt or cond.prompt_embedding):
            raise ConfigError(f"{spec.name} is not text-conditioned: --prompt and --prompt-embedding apply to Stable Diffusion, "
                              "SDXL, SD3, Flux, SANA and PixArt models")  # fmt: skip
        if cfg.kind not in ("sd",) and cond.prompt_embedding:
            raise ConfigError(f"--prompt-embedding applies to Stable Diffusion 1.x/2.x; {spec.name} ({cfg.kind}) embeds "
                              "its prompt with its own text encoders: pass --prompt TEXT, or nothing for the null condition")  # fmt: skip
        n_classes = cfg.model_dict().get("num_embeds_ada_norm") if cfg.kind == "dit" else cfg.model_dict().get("num_class_embeds")
        if cond.class_label is not None:
            if not n_classes:
                raise ConfigError(f"--class-label {cond.class_label} given, but {spec.name} is not class-conditional")
            if not 0 <= cond.class_label < int(n_classes):
                raise ConfigError(f"--class-label must be in [0, {int(n_classes) - 1}], got {cond.class_label}")
        elif n_classes and cfg.kind != "dit":
            raise ConfigError(f"{spec.name} is class-conditional: pass --class-label K, one fixed class for every image "
                              f"in 0..{int(n_classes) - 1}; never the true labels")  # fmt: skip
        if checkpoint is None:
            return
        d = ModelDir.read(checkpoint)
        weight_files(d.denoiser)
        if cfg.latent:
            weight_files(d.vae)  # type: ignore[arg-type]
        if cfg.kind == "sd" and not cond.prompt_embedding:
            if d.text_encoder is None or d.tokenizer is None:
                raise CheckpointError(f"{checkpoint} has no text_encoder/ and tokenizer/ to embed the prompt with; pass "
                                      "--prompt-embedding FILE with the prompt's (L, D) embedding instead")  # fmt: skip
            weight_files(d.text_encoder)
        elif cfg.kind != "sd":
            for part in _text_parts(cfg, cond):
                enc, tok = d.part(part), d.part(part.replace("text_encoder", "tokenizer"))
                if enc is None and part == "text_encoder_3":
                    continue  # SD3 without its T5: zeros in its place, as its pipeline does
                if enc is None or tok is None:
                    raise CheckpointError(f"{checkpoint} has no {part}/ and {part.replace('text_encoder', 'tokenizer')}/ to "
                                          f"embed the {'empty ' if not cond.text else ''}prompt with; use the complete pipeline "
                                          "folder, or --flags null=zeros for a zero condition")  # fmt: skip
                weight_files(enc)

    def weights(self, spec: ModelSpec, checkpoint: Path | None, cond: Conditioning, dtype: torch.dtype) -> WeightBytes:
        """The denoiser and VAE counted on the meta device (at the weights= flag's dtype when the run
        computes in fp32, as :meth:`load` does); the text encoders from their files' sizes."""
        cfg: DiffusersConfig = spec.config
        dtype = cfg.dtype if dtype == torch.float32 else dtype
        with torch.device("meta"):
            resident = {"denoiser": parameter_bytes(build(cfg.model_class, cfg.model_dict()), dtype)}
            if cfg.latent:
                resident["vae"] = parameter_bytes(build(cfg.autoencoder, cfg.vae_dict()), dtype)
        transient = {}
        d = ModelDir.read(checkpoint) if checkpoint is not None else None
        for part in _text_parts(cfg, cond) if d is not None else ():
            enc = d.part(part)  # type: ignore[union-attr]
            if enc is not None:
                transient[part] = sum(f.stat().st_size for f in weight_files(enc))
        return WeightBytes(resident, transient)

    def cond_identity(self, spec: ModelSpec, cond: Conditioning) -> dict[str, Any]:
        cfg: DiffusersConfig = spec.config
        if cfg.kind == "sd":
            emb = file_sha256(Path(cond.prompt_embedding).expanduser()) if cond.prompt_embedding else None
            return {"prompt": cond.text, "prompt_embedding_sha256": emb}
        if cfg.kind == "dit":
            from diffprobe.extract.diffusers.dit import null_class

            return {"class_label": null_class(cfg.model_dict()) if cond.class_label is None else cond.class_label}
        if cfg.text:
            zeros = not cond.text and cfg.text_dict()["null"] == "zeros"
            how = "zeros" if zeros else f"{', '.join(_text_parts(cfg, cond))} on the {'empty ' if not cond.text else ''}prompt"
            return {"prompt": cond.text, "text_condition": {**cfg.text_dict(), "computed_as": how}}
        return {"class_label": cond.class_label}

    def checkpoint_sha256(self, spec: ModelSpec, checkpoint: Path, cond: Conditioning) -> str:
        """sha256 over the files that shape the values (other files in the directory — other
        weight variants, the safety checker — do not count)."""
        return tree_sha256(checkpoint, _components(spec.config, ModelDir.read(checkpoint), cond))

    def load(self, spec: ModelSpec, checkpoint: Path | None, device: torch.device, dtype: torch.dtype, cond: Conditioning) -> Backbone:
        cfg: DiffusersConfig = spec.config
        diffusers = import_diffusers()
        run = runner(cfg.kind)
        dtype = cfg.dtype if dtype == torch.float32 else dtype  # the weights= flag, unless the caller chose
        d = ModelDir.read(checkpoint) if checkpoint is not None else None
        prepared = run.prepare(cfg, d, cond, device)  # the text condition: its encoders are freed before the denoiser loads
        if d is None:
            net, vae = self._random(cfg, device, dtype, spec.name)
            sha = None
        else:
            net = _load(getattr(diffusers, cfg.model_class), d.denoiser, dtype).to(device)
            vae = _load(getattr(diffusers, cfg.autoencoder), d.vae, dtype).to(device) if cfg.latent and d.vae else None  # type: ignore[arg-type]
            sha = self.checkpoint_sha256(spec, d.root, cond)
            log.info("loaded %s (%s) from %s (sha256 %s…)", spec.name, cfg.model_class, checkpoint, sha[:12])
        if vae is not None:
            encoder_only(vae)
        return run.backbone(spec, net, vae, d, cond, checkpoint, sha, device, prepared)

    @staticmethod
    def _random(cfg: DiffusersConfig, device: torch.device, dtype: torch.dtype, name: str) -> tuple[torch.nn.Module, torch.nn.Module | None]:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(RANDOM_INIT_SEED)
            with device:
                net = build(cfg.model_class, cfg.model_dict()).to(dtype)
                vae = build(cfg.autoencoder, cfg.vae_dict()).to(dtype) if cfg.latent else None
        log.warning("%s has random weights (--random-weights): its features say nothing about a trained model", name)
        return net.eval(), (vae.eval() if vae is not None else None)


def _load(cls: Any, folder: Path, dtype: torch.dtype) -> torch.nn.Module:
    """``cls.from_pretrained(folder)``, local files only, refusing missing or misshapen weights."""
    try:
        model, info = cls.from_pretrained(folder, local_files_only=True, torch_dtype=dtype, use_safetensors=uses_safetensors(folder),
                                          output_loading_info=True)  # fmt: skip
    except (OSError, ValueError, RuntimeError, KeyError) as e:
        raise CheckpointError(f"cannot load {cls.__name__} from {folder}: {str(e).splitlines()[0][:300]}") from None
    missing, mismatched = info.get("missing_keys") or [], info.get("mismatched_keys") or []
    if missing or mismatched:
        first = (missing or [m[0] for m in mismatched])[:5]
        raise CheckpointError(f"{folder} does not fit its config.json: {len(missing)} missing and {len(mismatched)} misshapen "
                              f"tensors (first: {', '.join(map(str, first))})")  # fmt: skip
    return model.to(dtype).eval()  # type: ignore[no-any-return]  # some classes ignore torch_dtype when loading
