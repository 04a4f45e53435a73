"""diffusers U-Nets (``UNet2DModel``, ``UNet2DConditionModel``): blocks numbered like ADM's.

Blocks in forward order, as ADM numbers them: ``conv_in``; in each down block, every resnet (with
its attention, if the block has them) and the downsampler; the mid block; in each up block, every
resnet (with its attention), the last one together with the upsampler. A block's module path is
that of the module that ends it (``down_blocks.1.attentions.0``, ``up_blocks.0.upsamplers.0``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from diffprobe.errors import ConfigError
from diffprobe.extract.backbone import Backbone, Timesteps
from diffprobe.extract.diffusers.latents import encode_latents
from diffprobe.extract.diffusers.runner import Runner, Unit
from diffprobe.extract.hooks import BlockTap
from diffprobe.extract.spec import Conditioning, ModelSpec

DOWN = ("DownBlock2D", "AttnDownBlock2D", "CrossAttnDownBlock2D")
MID = ("UNetMidBlock2D", "UNetMidBlock2DCrossAttn")
UP = ("UpBlock2D", "AttnUpBlock2D", "CrossAttnUpBlock2D")


def _check(block: Any, allowed: tuple[str, ...], where: str) -> None:
    name = type(block).__name__
    if name not in allowed:
        raise ConfigError(f"{where} is a {name}; diffprobe numbers the blocks of U-Nets made of {', '.join(allowed)}")


def unet_units(net: Any) -> list[Unit]:
    """(module path, the module that ends the block, stage) of every block, in forward order."""
    units: list[tuple[str, nn.Module, str]] = [("conv_in", net.conv_in, "input")]
    for i, block in enumerate(net.down_blocks):
        _check(block, DOWN, f"down_blocks.{i}")
        attns = getattr(block, "attentions", None)
        for j, res in enumerate(block.resnets):
            end, path = (attns[j], f"down_blocks.{i}.attentions.{j}") if attns else (res, f"down_blocks.{i}.resnets.{j}")
            units.append((path, end, "input"))
        if block.downsamplers:
            units.append((f"down_blocks.{i}.downsamplers.0", block.downsamplers[0], "input"))
    if net.mid_block is None:
        raise ConfigError("this U-Net has no mid block; diffprobe numbers blocks around it")
    _check(net.mid_block, MID, "mid_block")
    units.append(("mid_block", net.mid_block, "middle"))
    for i, block in enumerate(net.up_blocks):
        _check(block, UP, f"up_blocks.{i}")
        attns = getattr(block, "attentions", None)
        last = len(block.resnets) - 1
        for j, res in enumerate(block.resnets):
            end, path = (attns[j], f"up_blocks.{i}.attentions.{j}") if attns else (res, f"up_blocks.{i}.resnets.{j}")
            if j == last and block.upsamplers:
                end, path = block.upsamplers[0], f"up_blocks.{i}.upsamplers.0"
            units.append((path, end, "output"))
    return units


class UNetBackbone(Backbone):
    """A frozen diffusers U-Net, with the VAE and prompt embedding of a latent, text-conditioned one.

    Args:
        net: the ``UNet2DModel`` or ``UNet2DConditionModel``.
        vae: the ``AutoencoderKL`` whose latents the U-Net denoises (None: pixel space).
        context: (1, L, D) the prompt's embedding, for a ``UNet2DConditionModel``.
    """

    context: Tensor | None

    def __init__(self, spec: ModelSpec, net: Any, vae: Any = None, context: Tensor | None = None,
                 cond: Conditioning | None = None, checkpoint: Path | None = None, checkpoint_sha256: str | None = None) -> None:  # fmt: skip
        super().__init__(spec, spec.config.process(), cond, checkpoint, checkpoint_sha256)
        self.net: Any = net
        self.vae: Any = vae
        self.register_buffer("context", context, persistent=False)
        self.tap = BlockTap([m for _, m, _ in unet_units(net)])
        self.freeze()

    def encode(self, x0: Tensor) -> Tensor:
        """Pixels → latents: the VAE posterior's mean × its scaling factor (deterministic)."""
        return x0 if self.vae is None else encode_latents(self.vae, x0)

    def _kwargs(self, x_t: Tensor, t: Tensor | int | Timesteps) -> dict[str, Any]:
        self._check_input(x_t)
        kw: dict[str, Any] = {"sample": x_t, "timestep": self._per_row_t(x_t, t), "return_dict": False}
        if self.context is not None:
            kw["encoder_hidden_states"] = self.context.expand(x_t.shape[0], -1, -1)
        if self.cond.class_label is not None:
            kw["class_labels"] = torch.full((x_t.shape[0],), self.cond.class_label, dtype=torch.long, device=x_t.device)
        return kw

    def run_blocks(self, x_t: Tensor, t: Tensor | int | Timesteps, numbers: tuple[int, ...],
                   add: Mapping[int, Tensor] | None = None) -> dict[int, Tensor]:  # fmt: skip
        kw = self._kwargs(x_t, t)
        return self.tap.blocks(lambda: self.net(**kw), numbers, add)

    def forward(self, x_t: Tensor, t: Tensor | int | Timesteps) -> Tensor:
        out = self.net(**self._kwargs(x_t, t))
        return out[0]

    def extra_repr(self) -> str:
        ck = self.checkpoint.name if self.checkpoint else "random init"
        return f"name={self.name}, {type(self.net).__name__}, blocks={self.tap.n_blocks}, checkpoint={ck}"


class UNetRunner(Runner):
    """``UNet2DModel``: a pixel-space DDPM (and the base of Stable Diffusion 1.x/2.x's runner)."""

    kind = "unet"
    autoencoder: ClassVar[str | None] = None
    process = "ddpm"

    def units(self, net: Any) -> list[Unit]:
        return unet_units(net)

    def meta_inputs(self, net: Any, cfg: Any) -> dict[str, Any]:
        kw: dict[str, Any] = {"sample": torch.empty(1, *cfg.noise_shape), "timestep": torch.zeros(1, dtype=torch.long),
                              "return_dict": False}  # fmt: skip
        if self.text_conditioned:
            kw["encoder_hidden_states"] = torch.empty(1, cfg.text_len, cfg.text_dim)
        if net.config.get("num_class_embeds"):
            kw["class_labels"] = torch.zeros(1, dtype=torch.long)
        return kw

    def backbone(self, spec: ModelSpec, net: Any, vae: Any, model_dir: Any, cond: Conditioning,
                 checkpoint: Path | None, sha: str | None, device: torch.device, prepared: Any) -> Backbone:  # fmt: skip
        context = None
        if self.text_conditioned:
            from diffprobe.extract.diffusers.text import sd_context

            context = sd_context(spec.config, model_dir, cond, device)
        return UNetBackbone(spec, net, vae, context, cond, checkpoint, sha)


class SDRunner(UNetRunner):
    """Stable Diffusion 1.x/2.x's ``UNet2DConditionModel`` + ``AutoencoderKL``: the prompt's CLIP states."""

    kind = "sd"
    autoencoder = "AutoencoderKL"
    text_conditioned = True


PIXEL = UNetRunner()
SD = SDRunner()
