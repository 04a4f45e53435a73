"""Layers of the ADM U-Net (Dhariwal & Nichol 2021, "Diffusion Models Beat GANs").

Written from the architecture description. Module and parameter names follow the official
guided-diffusion checkpoints (``in_layers.2``, ``emb_layers.1``, ``qkv``, ``proj_out`` …) so that
their ``state_dict`` loads with ``strict=True``.
"""

from __future__ import annotations

import math
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from diffprobe.extract.adm.kernels import group_norm_act


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Sinusoidal embedding of (possibly fractional) timesteps.

    ``emb[:, i] = cos(t * w_i)`` for the first half and ``sin(t * w_i)`` for the second, with
    ``w_i = max_period ** (-i / half)`` (Vaswani et al. 2017, as used by ADM).

    Args:
        t: (N,) timesteps.
        dim: embedding width.
    Returns:
        (N, dim) float32 embedding.
    """
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


class GroupNorm32(nn.GroupNorm):
    """GroupNorm(32) computed in float32 whatever the input dtype (stable under fp16/bf16).

    :meth:`act` is the norm with what follows it in the network — the timestep scale-shift and
    SiLU — as one op, run by the kernel named in ``kernel`` (see :mod:`diffprobe.extract.adm.kernels`):
    "torch" computes exactly what the separate modules compute; "triton" reads the input once and
    writes the result once.
    """

    kernel: str = "torch"

    def __init__(self, channels: int) -> None:
        super().__init__(32, channels)

    def forward(self, x: Tensor) -> Tensor:
        """x: (N, C, *spatial) → normalised, same shape and dtype."""
        return self.act(x, silu=False)

    def act(self, x: Tensor, scale: Tensor | None = None, shift: Tensor | None = None, silu: bool = True) -> Tensor:
        """``SiLU(GN(x)·(1 + scale) + shift)``; x: (N, C, *spatial), scale/shift: (N, C, 1, 1) or None."""
        return group_norm_act(x, self.weight, self.bias, self.num_groups, self.eps, scale, shift, silu, kernel=self.kernel)


class Upsample(nn.Module):
    """Nearest-neighbour 2× upsampling, optionally followed by a 3×3 conv (key ``conv``)."""

    def __init__(self, channels: int, use_conv: bool) -> None:
        super().__init__()
        self.use_conv = use_conv
        if use_conv:
            self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        return self.conv(x) if self.use_conv else x


class Downsample(nn.Module):
    """2× downsampling: a stride-2 3×3 conv, or 2×2 average pooling (key ``op``)."""

    def __init__(self, channels: int, use_conv: bool) -> None:
        super().__init__()
        self.op: nn.Module = nn.Conv2d(channels, channels, 3, stride=2, padding=1) if use_conv else nn.AvgPool2d(2, 2)

    def forward(self, x: Tensor) -> Tensor:
        return self.op(x)


class ResBlock(nn.Module):
    """Residual block conditioned on the timestep embedding.

    ``h = in_layers(x)`` (GroupNorm → SiLU → [resample] → conv3×3); the embedding enters either as
    a bias or, with scale-shift norm, as ``GN(h)·(1 + scale) + shift`` (ADM eq. in §3); then
    SiLU → dropout → conv3×3 and a skip connection (identity, or a 1×1 conv when widths differ).
    With ``up``/``down`` both branches are resampled (``resblock_updown``).
    """

    def __init__(
        self,
        channels: int,
        emb_channels: int,
        dropout: float,
        out_channels: int | None = None,
        use_scale_shift_norm: bool = False,
        up: bool = False,
        down: bool = False,
    ) -> None:
        super().__init__()
        out_channels = out_channels or channels
        self.use_scale_shift_norm = use_scale_shift_norm
        self.in_layers = nn.Sequential(GroupNorm32(channels), nn.SiLU(), nn.Conv2d(channels, out_channels, 3, padding=1))
        self.updown = up or down
        if up:
            self.h_upd: nn.Module = Upsample(channels, False)
            self.x_upd: nn.Module = Upsample(channels, False)
        elif down:
            self.h_upd = Downsample(channels, False)
            self.x_upd = Downsample(channels, False)
        else:
            self.h_upd = self.x_upd = nn.Identity()
        self.emb_layers = nn.Sequential(
            nn.SiLU(), nn.Linear(emb_channels, 2 * out_channels if use_scale_shift_norm else out_channels)
        )
        self.out_layers = nn.Sequential(
            GroupNorm32(out_channels),
            nn.SiLU(),
            nn.Dropout(p=dropout),
            nn.Conv2d(out_channels, out_channels, 3, padding=1),
        )
        self.skip_connection: nn.Module = (
            nn.Identity() if out_channels == channels else nn.Conv2d(channels, out_channels, 1)
        )

    def forward(self, x: Tensor, emb: Tensor, index: Tensor | None = None) -> Tensor:
        """x: (N, C, H, W), emb: (U, E) distinct embeddings, index: (N,) row of emb per item
        (None: U = N) → (N, C_out, H', W')."""
        h = cast(GroupNorm32, self.in_layers[0]).act(x)  # GroupNorm → SiLU (in_layers.1) as one op
        if self.updown:
            h, x = self.h_upd(h), self.x_upd(x)
        h = self.in_layers[2](h)
        if index is None:
            e = self.emb_layers(emb)
        else:  # one distinct embedding at a time: its value must not depend on how many there are
            e = torch.cat([self.emb_layers(emb[i : i + 1]) for i in range(len(emb))]) if len(emb) > 1 else self.emb_layers(emb)
            e = e[index]
        e = e.to(h.dtype)[:, :, None, None]
        if self.use_scale_shift_norm:  # GroupNorm → ·(1 + scale) + shift → SiLU (out_layers.1) as one op
            scale, shift = e.chunk(2, dim=1)
            h = cast(GroupNorm32, self.out_layers[0]).act(h, scale, shift)
        else:
            h = cast(GroupNorm32, self.out_layers[0]).act(h + e)
        h = self.out_layers[3](self.out_layers[2](h))  # dropout, conv 3×3
        return self.skip_connection(x) + h


class AttentionBlock(nn.Module):
    """Spatial self-attention over the H·W positions, computed with SDPA.

    The 1×1 ``qkv`` projection's output channels are laid out per head as (q, k, v) in the legacy
    order, or as (all q, all k, all v) with ``use_new_attention_order``; both orders appear in
    official checkpoints. Softmax scale is ``1/sqrt(head_dim)``.
    """

    def __init__(
        self, channels: int, num_heads: int = 1, num_head_channels: int | None = None, new_order: bool = False
    ) -> None:
        super().__init__()
        if num_head_channels is None:
            if channels % num_heads:
                raise ValueError(f"channels {channels} not divisible by num_heads {num_heads}")
            self.num_heads = num_heads
        else:
            if channels % num_head_channels:
                raise ValueError(f"channels {channels} not divisible by num_head_channels {num_head_channels}")
            self.num_heads = channels // num_head_channels
        self.new_order = new_order
        self.norm = GroupNorm32(channels)
        self.qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.proj_out = nn.Conv1d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        """x: (N, C, H, W) → (N, C, H, W)."""
        n, c, *spatial = x.shape
        x = x.reshape(n, c, -1)
        qkv = self.qkv(self.norm(x))  # (N, 3C, T)
        heads, d, length = self.num_heads, c // self.num_heads, x.shape[-1]
        if self.new_order:
            q, k, v = (z.reshape(n, heads, d, length) for z in qkv.chunk(3, dim=1))
        else:
            q, k, v = qkv.reshape(n, heads, 3 * d, length).split(d, dim=2)
        # SDPA wants (N, heads, T, d)
        h = F.scaled_dot_product_attention(q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2))
        h = h.transpose(-1, -2).reshape(n, c, length)
        return (x + self.proj_out(h)).reshape(n, c, *spatial)


class EmbedSequential(nn.Sequential):
    """A sequence of layers where ResBlocks also receive the timestep embedding."""

    def forward(self, x: Tensor, emb: Tensor, index: Tensor | None = None) -> Tensor:  # type: ignore[override]
        for layer in self:
            x = layer(x, emb, index) if isinstance(layer, ResBlock) else layer(x)
        return x
