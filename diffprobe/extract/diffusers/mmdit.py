"""MM-DiT kinds: Stable Diffusion 3/3.5 (``SD3Transformer2DModel``) and Flux.1 (``FluxTransformer2DModel``).

Their joint blocks carry a text stream beside the image stream and return (text, image); block k's
output is the image stream's tokens as a (D, H/2, W/2) map over the latent grid — SD3 patches 2×2
latents into a token, Flux packs 2×2 latents of its 16 channels into one 64-wide token, and both
keep the tokens in row-major order of that grid. Flux's blocks are its 19 joint blocks
(``transformer_blocks``) then its 38 single blocks (``single_transformer_blocks``), whose output is
split back into the text and image streams by the model itself.

Both are trained with rectified flow: ``--t`` is σ·1000 before the shift. SD3 takes σ·1000 as its
timestep, Flux σ (it multiplies by 1000 itself) and — Flux.1-dev, guidance-distilled — the guidance
scale (3.5, its pipeline's default, unless ``--flags guidance=G``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from diffprobe.extract.diffusers.conditioned import TextRunner
from diffprobe.extract.diffusers.conditions import Condition, ConditionShape
from diffprobe.extract.diffusers.encoders import tokenizer_length
from diffprobe.extract.diffusers.layout import ModelDir
from diffprobe.extract.diffusers.runner import Unit

#: Flux.1-dev's pipeline default guidance scale
FLUX_GUIDANCE = 3.5


def _sigma(t: Tensor, sigmas: Tensor | None) -> Tensor:
    assert sigmas is not None, "a rectified-flow kind needs its σ table"
    return sigmas.to(t.device)[t]


class SD3Runner(TextRunner):
    kind = "sd3"
    process = "rectified-flow"
    streams = True
    text_parts = ("text_encoder", "text_encoder_2", "text_encoder_3")

    def units(self, net: Any) -> list[Unit]:
        return [(f"transformer_blocks.{i}", b, "joint") for i, b in enumerate(net.transformer_blocks)]

    def grid(self, net: Any, cfg: Any) -> tuple[int, int]:
        p = int(net.config.patch_size)
        _, h, w = cfg.noise_shape
        return h // p, w // p

    def text_defaults(self, model: dict[str, Any], model_dir: ModelDir | None) -> dict[str, Any]:
        return {"null": "empty", "max_tokens": 256, "clip_tokens": tokenizer_length(model_dir, "tokenizer", 77)}

    def condition_shape(self, cfg: Any) -> ConditionShape:
        m, s = cfg.model_dict(), cfg.text_dict()
        return ConditionShape(int(s["clip_tokens"]) + int(s["max_tokens"]), int(m.get("joint_attention_dim", 4096)),
                              int(m.get("pooled_projection_dim", 2048)))  # fmt: skip

    def timestep(self, net: Any, t: Tensor, sigmas: Tensor | None) -> Tensor:
        return _sigma(t, sigmas) * 1000  # SD3's timestep input is σ·1000 (after the shift)

    def inputs(self, net: Any, x_t: Tensor, timestep: Tensor, cond: Condition, cfg: Any) -> dict[str, Any]:
        n = x_t.shape[0]
        return {"hidden_states": x_t, "timestep": timestep, "encoder_hidden_states": cond.states.expand(n, -1, -1),
                "pooled_projections": cond.pooled.expand(n, -1), "return_dict": False}  # type: ignore[union-attr]  # fmt: skip


def pack(x: Tensor) -> Tensor:
    """(N, C, H, W) latents → (N, H/2·W/2, 4C) tokens: each 2×2 patch, channel-major, in row-major order."""
    n, c, h, w = x.shape
    return x.reshape(n, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5).reshape(n, (h // 2) * (w // 2), c * 4)


def unpack(tokens: Tensor, h: int, w: int) -> Tensor:
    """The inverse of :func:`pack` for an H×W latent: (N, H/2·W/2, 4C) → (N, C, H, W)."""
    n, _, d = tokens.shape
    c = d // 4
    return tokens.reshape(n, h // 2, w // 2, c, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(n, c, h, w)


def image_ids(h: int, w: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """(h·w, 3) Flux's rotary position ids of an h×w token grid: (0, row, column), row-major."""
    rows = torch.arange(h, device=device, dtype=dtype)[:, None].expand(h, w)
    cols = torch.arange(w, device=device, dtype=dtype)[None, :].expand(h, w)
    return torch.stack([torch.zeros_like(rows), rows, cols], dim=-1).reshape(h * w, 3)


class FluxRunner(TextRunner):
    kind = "flux"
    process = "rectified-flow"
    streams = True
    text_parts = ("text_encoder", "text_encoder_2")

    def units(self, net: Any) -> list[Unit]:
        joint = [(f"transformer_blocks.{i}", b, "joint") for i, b in enumerate(net.transformer_blocks)]
        return joint + [(f"single_transformer_blocks.{i}", b, "single") for i, b in enumerate(net.single_transformer_blocks)]

    def grid(self, net: Any, cfg: Any) -> tuple[int, int]:
        _, h, w = cfg.noise_shape
        return h // 2, w // 2

    def text_defaults(self, model: dict[str, Any], model_dir: ModelDir | None) -> dict[str, Any]:
        out: dict[str, Any] = {"null": "empty", "max_tokens": 512}
        if model.get("guidance_embeds"):
            out["guidance"] = FLUX_GUIDANCE
        return out

    def condition_shape(self, cfg: Any) -> ConditionShape:
        m = cfg.model_dict()
        return ConditionShape(int(cfg.text_dict()["max_tokens"]), int(m.get("joint_attention_dim", 4096)),
                              int(m.get("pooled_projection_dim", 768)))  # fmt: skip

    def timestep(self, net: Any, t: Tensor, sigmas: Tensor | None) -> Tensor:
        return _sigma(t, sigmas)  # Flux multiplies by 1000 itself

    def inputs(self, net: Any, x_t: Tensor, timestep: Tensor, cond: Condition, cfg: Any) -> dict[str, Any]:
        n, _, h, w = x_t.shape
        kw: dict[str, Any] = {"hidden_states": pack(x_t), "timestep": timestep, "encoder_hidden_states": cond.states.expand(n, -1, -1),
                              "pooled_projections": cond.pooled.expand(n, -1),  # type: ignore[union-attr]
                              "txt_ids": torch.zeros(cond.states.shape[1], 3, device=x_t.device, dtype=x_t.dtype),
                              "img_ids": image_ids(h // 2, w // 2, x_t.device, x_t.dtype), "return_dict": False}  # fmt: skip
        if net.config.guidance_embeds:
            kw["guidance"] = torch.full((n,), float(cfg.text_dict()["guidance"]), device=x_t.device, dtype=torch.float32)
        return kw

    def output(self, out: Tensor, x_t: Tensor) -> Tensor:
        return unpack(out, x_t.shape[2], x_t.shape[3])


SD3 = SD3Runner()
FLUX = FluxRunner()
