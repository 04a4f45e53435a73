"""The ADM family: OpenAI guided-diffusion U-Nets (our own module, official checkpoint format)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

import diffprobe.extract.adm.presets  # noqa: F401  (registers the presets)
from diffprobe.blocks import BlockInfo
from diffprobe.errors import CheckpointError, ConfigError
from diffprobe.extract.adm.config import ADMConfig, apply_flags
from diffprobe.extract.adm.diagnose import mismatch_hints
from diffprobe.extract.adm.layers import GroupNorm32
from diffprobe.extract.adm.unet import ADMUNet
from diffprobe.extract.backbone import Backbone, Timesteps
from diffprobe.extract.checkpoint import file_sha256, fit_problems, read_state_dict
from diffprobe.extract.family import Family, WeightBytes, parameter_bytes, register_family
from diffprobe.extract.noise import make_schedule
from diffprobe.extract.presets import Preset
from diffprobe.extract.spec import Conditioning, ModelSpec

log = logging.getLogger(__name__)

#: Seed of random weights (``random_weights=True``), so that they are the same on every run.
RANDOM_INIT_SEED = 0


@lru_cache(maxsize=32)
def measure_blocks(cfg: ADMConfig) -> tuple[BlockInfo, ...]:
    """Every block's output shape, as the network's builder laid it out (built on the meta device: no
    memory, no forward). Blocks are numbered as in the paper: input blocks, the middle block, output
    blocks. A block at downsampling factor ds is image_size / ds on a side: exact, because the config
    requires image_size to be divisible by every factor (tests check it against a meta forward)."""
    with torch.device("meta"):
        net = ADMUNet(cfg)
    paths = net.block_paths()
    n_in = len(net.input_blocks)
    out = []
    for i, (path, (c, ds)) in enumerate(zip(paths, net.block_grid, strict=True), start=1):
        stage = "input" if i <= n_in else "middle" if i == n_in + 1 else "output"
        out.append(BlockInfo(i, path, c, cfg.image_size // ds, cfg.image_size // ds, stage))
    return tuple(out)


class ADMBackbone(Backbone):
    """A frozen ADM U-Net: ``config`` (its :class:`ADMConfig`) and ``net`` (the :class:`ADMUNet`)."""

    def __init__(self, spec: ModelSpec, net: ADMUNet, cond: Conditioning | None = None, checkpoint: Path | None = None,
                 checkpoint_sha256: str | None = None) -> None:  # fmt: skip
        config: ADMConfig = spec.config
        super().__init__(spec, make_schedule(config.noise_schedule, config.diffusion_steps), cond, checkpoint, checkpoint_sha256)
        label = self.cond.class_label
        if label is not None:
            if not config.class_cond:
                raise ConfigError(f"class_label={label} given, but {spec.name} is not class-conditional")
            if not 0 <= label < config.num_classes:
                raise ConfigError(f"class_label must be in [0, {config.num_classes - 1}], got {label}")
        self.config = config
        self.net = net
        self.freeze()

    @property
    def in_channels(self) -> int:
        return self.config.in_channels

    def _inputs(self, x_t: Tensor, t: Tensor | int | Timesteps) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """(t, y, index): per-item t and y, or — for :class:`Timesteps` — the distinct ones and
        each item's row among them (the U-Net embeds each distinct t once)."""
        self._check_input(x_t)
        index = None
        if isinstance(t, Timesteps):
            if t.index.numel() != x_t.shape[0]:
                raise ValueError(f"Timesteps index has {t.index.numel()} rows for {x_t.shape[0]} images")
            tt, index = t.values, t.index
        else:
            tt = self._per_row_t(x_t, t)
        y = None
        if self.config.class_cond:
            if self.class_label is None:
                raise ConfigError(
                    f"{self.name} is class-conditional: pass --class-label K (class_label=K in Python), one fixed class "
                    "for every image; never the true labels, which would leak the answer into the features"
                )
            y = torch.full((tt.shape[0],), self.class_label, dtype=torch.long, device=x_t.device)
        return tt, y, index

    def run_blocks(
        self, x_t: Tensor, t: Tensor | int | Timesteps, numbers: tuple[int, ...], add: Mapping[int, Tensor] | None = None
    ) -> dict[int, Tensor]:
        """See :meth:`Backbone.run_blocks`; ``add`` follows :meth:`ADMUNet.run`."""
        tt, y, index = self._inputs(x_t, t)
        _, feats = self.net.run(x_t, tt, y, capture=numbers, stop_after=max(numbers), index=index, add=add)
        return {n: feats[n] for n in numbers}

    def forward(self, x_t: Tensor, t: Tensor | int | Timesteps) -> Tensor:
        """Full model output (N, C_out, H, W) — ε, plus the variance channels if learn_sigma."""
        tt, y, index = self._inputs(x_t, t)
        out, _ = self.net.run(x_t, tt, y, index=index)
        assert out is not None
        return out

    def set_norm_kernel(self, name: str) -> None:
        """Every GroupNorm of the U-Net (with the scale-shift and SiLU after it) runs kernel ``name``."""
        from diffprobe.extract.config import NORM_KERNELS

        if name not in NORM_KERNELS:
            raise NORM_KERNELS.unknown(name)
        for m in self.net.modules():
            if isinstance(m, GroupNorm32):
                m.kernel = name

    def extra_repr(self) -> str:
        ck = self.checkpoint.name if self.checkpoint else "random init"
        return f"name={self.name}, blocks={self.net.num_blocks}, checkpoint={ck}"


def _check_fit(cfg: ADMConfig, sd: Mapping[str, Tensor], path: Path) -> None:
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in ADMUNet(cfg).state_dict().items()}
    problems = fit_problems(expected, {k: tuple(v.shape) for k, v in sd.items()}, path)
    if problems:
        raise CheckpointError("\n".join([*problems, *(f"  hint: {h}" for h in mismatch_hints(cfg, sd))]))


@register_family
class ADMFamily(Family):
    """guided-diffusion's U-Net; flags as in its README (``image_size=64,channel_mult=1,2,2``)."""

    name = "adm"
    flags_help = "guided-diffusion flags overriding the preset: 'image_size=64,channel_mult=1,2,2' or a .toml/.json file"

    def spec(self, model: str, preset: Preset | None, flags: Mapping[str, Any], checkpoint: Path | None) -> ModelSpec:
        cfg = apply_flags(preset.config if preset else ADMConfig(), flags)
        size = cfg.image_size
        return ModelSpec(model, self.name, cfg, size, cfg.diffusion_steps, (cfg.in_channels, size, size), measure_blocks(cfg),
                         identity={"adm_flags": cfg.to_flags()}, compilable=True)  # fmt: skip

    def weights(self, spec: ModelSpec, checkpoint: Path | None, cond: Conditioning, dtype: torch.dtype) -> WeightBytes:
        with torch.device("meta"):
            return WeightBytes({"unet": parameter_bytes(ADMUNet(spec.config), dtype)}, {})

    def check(self, spec: ModelSpec, checkpoint: Path | None, cond: Conditioning) -> None:
        cfg: ADMConfig = spec.config
        if cond.prompt or cond.prompt_embedding:
            raise ConfigError(f"{spec.name} is not text-conditioned: --prompt and --prompt-embedding apply to Stable Diffusion models")
        if cfg.class_cond and cond.class_label is None:
            raise ConfigError(
                f"{spec.name} is class-conditional: pass --class-label K (class_label=K in Python), one fixed class for every "
                f"image in 0..{cfg.num_classes - 1}; never the true labels, which would leak the answer into the features"
            )
        if cond.class_label is not None and not cfg.class_cond:
            raise ConfigError(f"--class-label {cond.class_label} given, but {spec.name} is not class-conditional")
        if checkpoint is not None:
            _check_fit(cfg, read_state_dict(checkpoint), checkpoint)

    def load(self, spec: ModelSpec, checkpoint: Path | None, device: torch.device, dtype: torch.dtype, cond: Conditioning) -> Backbone:
        cfg: ADMConfig = spec.config
        if checkpoint is None:
            # Random init with PyTorch's default initialisers (no zeroed output branches), for tests
            # and benchmarks: seeded, so the same on every run on a device type; built on the device.
            with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                torch.manual_seed(RANDOM_INIT_SEED)
                with device:
                    net = ADMUNet(cfg).to(dtype)
            log.warning("%s has random weights (--random-weights): its features say nothing about a trained model", spec.name)
            return ADMBackbone(spec, net, cond)
        sd = read_state_dict(checkpoint)
        with torch.device("meta"):
            net = ADMUNet(cfg)
        _check_fit(cfg, sd, checkpoint)
        net.load_state_dict({k: v.to(device=device, dtype=dtype) for k, v in sd.items()}, strict=True, assign=True)
        sha = self.checkpoint_sha256(spec, checkpoint, cond)
        log.info("loaded %s from %s (sha256 %s…)", spec.name, checkpoint, sha[:12])
        return ADMBackbone(spec, net, cond, checkpoint=checkpoint, checkpoint_sha256=sha)

    def checkpoint_sha256(self, spec: ModelSpec, checkpoint: Path, cond: Conditioning) -> str:
        return file_sha256(checkpoint)
