"""The text-conditioned latent kinds (SDXL, SD3, Flux.1, SANA, PixArt): one backbone, one runner base.

:class:`TextBackbone` holds the denoiser, the autoencoder's encoder and the null condition (computed
once, before the denoiser is loaded; the text encoders are gone by then). Each forward maps the
integer ``t`` to the model's own timestep input — DDPM's step, or rectified flow's σ (or σ·1000) —
and builds the model's inputs from the latents, that timestep and the condition (:class:`TextRunner`
subclasses, one per kind). Blocks are read with forward hooks; the forward stops after the deepest
requested block.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor

from diffprobe.extract.backbone import Backbone, Timesteps
from diffprobe.extract.diffusers.conditions import Condition, ConditionShape, null_condition
from diffprobe.extract.diffusers.latents import encode_latents
from diffprobe.extract.diffusers.runner import Runner
from diffprobe.extract.noise import RectifiedFlow
from diffprobe.extract.spec import Conditioning, ModelSpec


class TextRunner(Runner):
    """A text-conditioned latent kind: its condition's shape, timestep input and forward inputs."""

    text_conditioned = True
    #: the text encoder folders the condition is computed with (``text_encoder_3`` of SD3 is optional)
    text_parts: ClassVar[tuple[str, ...]] = ("text_encoder",)

    @abc.abstractmethod
    def condition_shape(self, cfg: Any) -> ConditionShape:
        """The shapes of the condition (for the meta forward and the zero condition)."""

    @abc.abstractmethod
    def inputs(self, net: Any, x_t: Tensor, timestep: Tensor, cond: Condition, cfg: Any) -> dict[str, Any]:
        """The forward's keyword arguments for (N, C, H, W) latents ``x_t`` and (N,) ``timestep``."""

    def timestep(self, net: Any, t: Tensor, sigmas: Tensor | None) -> Tensor:
        """The model's timestep input for (N,) int64 ``t``: DDPM's integer step (flow kinds override)."""
        return t

    def output(self, out: Tensor, x_t: Tensor) -> Tensor:
        """The forward's output as (N, C_out, H, W) (Flux unpacks its tokens)."""
        return out

    def meta_inputs(self, net: Any, cfg: Any) -> dict[str, Any]:
        x = torch.empty(1, *cfg.noise_shape)
        t = torch.zeros(1, dtype=torch.long)
        sigmas = torch.zeros(cfg.process().steps) if cfg.flow else None
        return self.inputs(net, x, self.timestep(net, t, sigmas), self.condition_shape(cfg).empty(), cfg)

    def prepare(self, cfg: Any, model_dir: Any, cond: Conditioning, device: torch.device) -> Condition:
        """The condition of every image, computed once with the directory's text encoders (freed after)."""
        return null_condition(self.kind, model_dir, cond.text, cfg.text_dict(), cfg.model_dict(), self.condition_shape(cfg),
                              device, cfg.dtype)  # fmt: skip

    def backbone(self, spec: ModelSpec, net: Any, vae: Any, model_dir: Any, cond: Conditioning,
                 checkpoint: Path | None, sha: str | None, device: torch.device, prepared: Any) -> Backbone:  # fmt: skip
        return TextBackbone(spec, self, net, vae, prepared, cond, checkpoint, sha)


class TextBackbone(Backbone):
    """A frozen text-conditioned latent denoiser with its autoencoder and its one condition.

    Args:
        runner: the kind's :class:`TextRunner`.
        net: the denoiser; vae: the autoencoder (its decoder may be gone).
        condition: the condition of batch one every image gets.
    """

    states: Tensor
    pooled: Tensor | None
    mask: Tensor | None
    sigmas: Tensor | None

    def __init__(self, spec: ModelSpec, runner: TextRunner, net: Any, vae: Any, condition: Condition, cond: Conditioning | None = None,
                 checkpoint: Path | None = None, checkpoint_sha256: str | None = None) -> None:  # fmt: skip
        process = spec.config.process()
        super().__init__(spec, process, cond, checkpoint, checkpoint_sha256)
        self.runner = runner
        self.net: Any = net
        self.vae: Any = vae
        self.register_buffer("states", condition.states, persistent=False)
        self.register_buffer("pooled", condition.pooled, persistent=False)
        self.register_buffer("mask", condition.mask, persistent=False)
        sigmas = torch.from_numpy(process.sigmas).float() if isinstance(process, RectifiedFlow) else None
        self.register_buffer("sigmas", sigmas, persistent=False)
        self.tap = runner.tap(net, spec.config)
        self.freeze()

    @property
    def condition(self) -> Condition:
        """The condition, in the denoiser's dtype."""
        dt = self.net.dtype
        return Condition(self.states.to(dt), None if self.pooled is None else self.pooled.to(dt), self.mask)

    def encode(self, x0: Tensor) -> Tensor:
        """(N, 3, S, S) pixels → (N, C, S/f, S/f) latents, scaled and shifted as the autoencoder's config says."""
        return encode_latents(self.vae, x0)

    def _inputs(self, x_t: Tensor, t: Tensor | int | Timesteps) -> dict[str, Any]:
        self._check_input(x_t)
        time = self.runner.timestep(self.net, self._per_row_t(x_t, t), self.sigmas)
        return self.runner.inputs(self.net, x_t.to(self.net.dtype), time, self.condition, self.spec.config)

    def run_blocks(self, x_t: Tensor, t: Tensor | int | Timesteps, numbers: tuple[int, ...],
                   add: Mapping[int, Tensor] | None = None) -> dict[int, Tensor]:  # fmt: skip
        kw = self._inputs(x_t, t)
        return self.tap.blocks(lambda: self.net(**kw), numbers, add)

    def forward(self, x_t: Tensor, t: Tensor | int | Timesteps) -> Tensor:
        return self.runner.output(self.net(**self._inputs(x_t, t))[0], x_t)

    def extra_repr(self) -> str:
        ck = self.checkpoint.name if self.checkpoint else "random init"
        return f"name={self.name}, {type(self.net).__name__}, blocks={self.tap.n_blocks}, process={self.schedule.name}, checkpoint={ck}"
