"""GroupNorm, then an optional per-item scale-shift and SiLU: the norm-and-activation of ADM.

ADM's ResBlocks compute ``SiLU(GN(h))`` and, with scale-shift norm, ``SiLU(GN(h)·(1 + scale) +
shift)`` (Dhariwal & Nichol 2021, §3), where GN is GroupNorm computed in float32 and cast back
(``GroupNorm32``); its attention blocks apply GN alone to (N, C, T) tokens. :func:`group_norm_act`
computes all three with interchangeable kernels, named in :data:`NORM_KERNELS`:

- ``"torch"``: the reference — the very ops of ``GroupNorm32`` → ``h·(1 + scale) + shift`` →
  ``F.silu``, so its bytes equal the modules' (each op rounds to x's dtype).
- ``"triton"``: fused kernels (:mod:`~diffprobe.extract.adm.kernels.group_norm_op`) that read x, keep
  the statistics and every intermediate in float32 and write the output once in x's dtype and
  memory format: under bf16 it differs from the reference by output rounding (it is closer to the
  exact value). Compiled on CUDA, Triton's interpreter on CPU; needs the optional ``triton``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from diffprobe.errors import ConfigError
from diffprobe.extract.adm.kernels.group_norm_op import group_norm_act_op, require_triton
from diffprobe.extract.config import NORM_KERNELS


def _check(x: Tensor, weight: Tensor, bias: Tensor, groups: int, scale: Tensor | None, shift: Tensor | None) -> None:
    """Raise ValueError ("expected …, got …") on arguments no kernel can use."""
    if x.dim() < 2 or not x.is_floating_point():
        raise ValueError(f"expected x of shape (N, C, *spatial) and a float dtype, got {tuple(x.shape)} {x.dtype}")
    c = x.shape[1]
    if groups <= 0 or c % groups:
        raise ValueError(f"expected groups dividing the {c} channels, got {groups}")
    if tuple(weight.shape) != (c,) or tuple(bias.shape) != (c,):
        raise ValueError(f"expected weight and bias of shape ({c},), got {tuple(weight.shape)} and {tuple(bias.shape)}")
    if (scale is None) != (shift is None):
        raise ValueError("expected scale and shift together (or neither), got only one")
    for t in (scale, shift):
        if t is not None and (t.dim() < 2 or t.shape[0] not in (1, x.shape[0]) or t.shape[1] != c or any(d != 1 for d in t.shape[2:])):
            raise ValueError(f"expected scale/shift of shape (N, C) or (N, C, 1, …) with N={x.shape[0]}, C={c}, got {tuple(t.shape)}")


def _per_item(t: Tensor, like: Tensor) -> Tensor:
    """(N, C[, 1…]) → (N, C, 1, …) in like's dtype, broadcasting against ``like`` (N, C, *spatial)."""
    return t.to(like.dtype).reshape(t.shape[0], t.shape[1], *[1] * (like.dim() - 2))


def _reference(
    x: Tensor, weight: Tensor, bias: Tensor, groups: int, eps: float, scale: Tensor | None, shift: Tensor | None, silu: bool
) -> Tensor:
    """GroupNorm32, then ``h·(1 + scale) + shift`` and SiLU, op by op as ADM's modules do them."""
    h = F.group_norm(x.float(), groups, weight.float(), bias.float(), eps).to(x.dtype)
    if scale is not None and shift is not None:
        h = h * (1 + _per_item(scale, h)) + _per_item(shift, h)
    return F.silu(h) if silu else h


def _fused(
    x: Tensor, weight: Tensor, bias: Tensor, groups: int, eps: float, scale: Tensor | None, shift: Tensor | None, silu: bool
) -> Tensor:
    """The ``diffprobe::group_norm_act`` custom op, scale and shift as (N, C) views in x's dtype."""
    if x.device.type not in ("cpu", "cuda"):
        raise ConfigError(f"kernel 'triton' runs on cuda (or, interpreted, on cpu) tensors, got {x.device.type}; use kernel='torch'")
    if not torch.compiler.is_compiling():  # the op's own first call checks too; this fails before tracing
        require_triton()
    n, c = x.shape[:2]
    sc = None if scale is None else scale.to(x.dtype).reshape(scale.shape[0], c).expand(n, c)
    sh = None if shift is None else shift.to(x.dtype).reshape(shift.shape[0], c).expand(n, c)
    return group_norm_act_op(x, weight, bias, groups, float(eps), sc, sh, silu)


#: The kernels :func:`group_norm_act` accepts, registered by name in :data:`~diffprobe.extract.config.NORM_KERNELS`
#: (that registry is free of torch, for the CLI's choices).
reference_kernel = _reference
fused_kernel = _fused


def group_norm_act(
    x: Tensor,
    weight: Tensor,
    bias: Tensor,
    groups: int,
    eps: float,
    scale: Tensor | None = None,
    shift: Tensor | None = None,
    silu: bool = True,
    kernel: str = "torch",
) -> Tensor:
    """``SiLU(GN(x)·(1 + scale) + shift)``, each part optional, GN's statistics in float32.

    ``GN(x)[n, c] = (x[n, c] - μ[n, g]) / sqrt(σ²[n, g] + eps) · weight[c] + bias[c]`` with μ, σ²
    the mean and biased variance of group ``g = c // (C / groups)`` of item n (Wu & He 2018).

    Args:
        x: (N, C, *spatial) — (N, C, H, W) contiguous or channels-last, (N, C, T) tokens — any float dtype.
        weight, bias: (C,) affine parameters (float32 in ADM, whatever x's dtype).
        groups: number of groups; divides C.
        eps: added to the variance.
        scale, shift: None, or per-item (N, C) / (N, C, 1, 1) tensors (both or neither); cast to
            x's dtype first, as ADM's ResBlock does.
        silu: apply SiLU ``h·sigmoid(h)`` last.
        kernel: one of :data:`NORM_KERNELS` (module docstring).
    Returns:
        (N, C, *spatial) in x's dtype; the triton kernel also keeps x's memory format.
    Raises:
        ConfigError: an unknown kernel, or 'triton' without the triton package or on another device.
        ValueError: shapes that do not fit together.
    """
    fn = NORM_KERNELS.get(kernel)
    _check(x, weight, bias, groups, scale, shift)
    return fn(x, weight, bias, groups, eps, scale, shift, silu)
