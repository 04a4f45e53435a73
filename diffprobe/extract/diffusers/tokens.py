"""Cross-attention token transformers: SANA (``SanaTransformer2DModel``) and PixArt-α/Σ (``PixArtTransformer2DModel``).

Block k is ``transformer_blocks.{k-1}``; its output, (N, T, D) image tokens in row-major order of the
(H/p, W/p) patch grid, is returned as (N, D, H/p, W/p). Both attend to a text encoder's token states
under their mask: SANA to Gemma-2's (over the 32×-compressed latents of its ``AutoencoderDC``, trained
with rectified flow: its timestep input is σ·1000), PixArt to T5's (over SD-VAE latents, DDPM:
its timestep is the integer step). PixArt-α at 1024 px also takes the image's resolution and aspect
ratio (``use_additional_conditions``): (S, S) and 1 for square images of side S.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from diffprobe.errors import ConfigError
from diffprobe.extract.diffusers.conditioned import TextRunner
from diffprobe.extract.diffusers.conditions import Condition, ConditionShape
from diffprobe.extract.diffusers.layout import ModelDir
from diffprobe.extract.diffusers.runner import Unit


class _TokenRunner(TextRunner):
    """Blocks are ``transformer_blocks``; tokens on the (H/p, W/p) grid; one masked text stream."""

    max_tokens = 300

    def units(self, net: Any) -> list[Unit]:
        return [(f"transformer_blocks.{i}", b, "transformer") for i, b in enumerate(net.transformer_blocks)]

    def grid(self, net: Any, cfg: Any) -> tuple[int, int]:
        p = int(net.config.patch_size)
        _, h, w = cfg.noise_shape
        return h // p, w // p

    def text_defaults(self, model: dict[str, Any], model_dir: ModelDir | None) -> dict[str, Any]:
        return {"null": "empty", "max_tokens": self.max_tokens}

    def condition_shape(self, cfg: Any) -> ConditionShape:
        return ConditionShape(int(cfg.text_dict()["max_tokens"]), int(cfg.model_dict().get("caption_channels", 4096)), masked=True)


class SanaRunner(_TokenRunner):
    kind = "sana"
    process = "rectified-flow"
    autoencoder = "AutoencoderDC"
    max_tokens = 300

    def text_defaults(self, model: dict[str, Any], model_dir: ModelDir | None) -> dict[str, Any]:
        if model.get("guidance_embeds"):
            raise ConfigError("this SanaTransformer2DModel is guidance-distilled (SANA-Sprint); diffprobe reads SANA's own models")
        return super().text_defaults(model, model_dir)

    def timestep(self, net: Any, t: Tensor, sigmas: Tensor | None) -> Tensor:
        assert sigmas is not None, "SANA is a rectified-flow model"
        return sigmas.to(t.device)[t] * 1000 * float(net.config.get("timestep_scale", 1.0) or 1.0)

    def inputs(self, net: Any, x_t: Tensor, timestep: Tensor, cond: Condition, cfg: Any) -> dict[str, Any]:
        n = x_t.shape[0]
        return {"hidden_states": x_t, "timestep": timestep, "encoder_hidden_states": cond.states.expand(n, -1, -1),
                "encoder_attention_mask": cond.mask.expand(n, -1), "return_dict": False}  # type: ignore[union-attr]  # fmt: skip


class PixArtRunner(_TokenRunner):
    kind = "pixart"
    process = "ddpm"
    max_tokens = 120  # PixArt-α; PixArt-Σ's presets say 300

    def inputs(self, net: Any, x_t: Tensor, timestep: Tensor, cond: Condition, cfg: Any) -> dict[str, Any]:
        n = x_t.shape[0]
        added: dict[str, Tensor | None] = {"resolution": None, "aspect_ratio": None}
        if net.use_additional_conditions:
            s = float(cfg.image_size)
            added = {"resolution": torch.tensor([[s, s]], dtype=cond.states.dtype, device=x_t.device).expand(n, -1),
                     "aspect_ratio": torch.ones(n, 1, dtype=cond.states.dtype, device=x_t.device)}  # fmt: skip
        return {"hidden_states": x_t, "timestep": timestep, "encoder_hidden_states": cond.states.expand(n, -1, -1),
                "encoder_attention_mask": cond.mask.expand(n, -1), "added_cond_kwargs": added, "return_dict": False}  # type: ignore[union-attr]  # fmt: skip


SANA = SanaRunner()
PIXART = PixArtRunner()
