"""The Triton kernels of :mod:`~diffprobe.extract.adm.kernels.group_norm_triton` as the torch custom op
``diffprobe::group_norm_act``.

Registered with ``torch.library.custom_op`` so that ``torch.compile`` puts one opaque node in its
graph instead of breaking it: the fake implementation gives inductor the output's shape, dtype and
strides without running anything. The op runs compiled on a CUDA tensor and in Triton's interpreter
on a CPU tensor (slow: for tests). Triton is imported when the op first runs, never at import, so
this module imports (and the op exists) where triton is absent; calling it there raises
:class:`~diffprobe.errors.ConfigError`.

Inference only: the op has no autograd formula.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import torch
from torch import Tensor

from diffprobe.errors import ConfigError

log = logging.getLogger(__name__)

#: Elements of x per program tile (the tile is (BLOCK_C, BLOCK_S), long along the contiguous axis).
TILE = 4096
#: Programs the statistics pass aims for per streaming multiprocessor before it splits the spatial
#: axis of each (item, channel block) over several programs.
PROGRAMS_PER_SM = 4


def require_triton() -> ModuleType:
    """The ``triton`` module, or a :class:`ConfigError` that says what to do when it is absent."""
    try:
        import triton
    except ImportError as e:
        raise ConfigError(
            "kernel 'triton' needs the triton package, which is not installed: install it "
            "(pip install triton; CUDA builds of torch bring it) or use kernel='torch'"
        ) from e
    return triton


@dataclass(frozen=True)
class TritonKernels:
    """The three jitted kernels of one mode (compiled or interpreted)."""

    partial_stats: Any
    group_stats: Any
    normalize: Any


@functools.cache
def triton_kernels(interpret: bool) -> TritonKernels:
    """The kernels jitted for Triton's CPU interpreter (``interpret``) or for the GPU.

    Triton picks the interpreter from ``TRITON_INTERPRET`` when a function is decorated, so the
    variable is set only around the decoration and restored: callers do not depend on import order.
    """
    triton = require_triton()
    from diffprobe.extract.adm.kernels import group_norm_triton as src

    old = os.environ.get("TRITON_INTERPRET")
    os.environ["TRITON_INTERPRET"] = "1" if interpret else "0"
    try:
        kernels = TritonKernels(*(triton.jit(f) for f in (src.partial_stats, src.group_stats, src.normalize)))
    finally:
        if old is None:
            del os.environ["TRITON_INTERPRET"]
        else:
            os.environ["TRITON_INTERPRET"] = old
    log.debug("jitted the group-norm kernels (interpreter: %s)", interpret)
    return kernels


@dataclass(frozen=True)
class Plan:
    """Tiling of an (N, C, S) tensor: tile shape, and the statistics' spatial chunk per program."""

    block_c: int
    block_s: int
    chunk: int  # spatial elements per statistics program (a multiple of block_s)
    split: int  # statistics programs per (item, channel block): ⌈S / chunk⌉


def _pow2(v: int, lo: int = 16, hi: int = TILE) -> int:
    return min(max(1 << max(v - 1, 0).bit_length(), lo), hi)


def plan(n: int, c: int, s: int, channels_last: bool, programs: int) -> Plan:
    """Tile shape for x seen as (n, c, s), and a split of S so that the statistics pass launches
    about ``programs`` programs (fewer when S is short: a chunk is at least one tile)."""
    if channels_last:  # channels are contiguous: a tile is a few positions × many channels
        block_c = _pow2(c, hi=128)
        block_s = _pow2(s, hi=TILE // block_c)
    else:
        block_s = _pow2(s, hi=1024)
        block_c = _pow2(c, hi=TILE // block_s)
    tiles = math.ceil(s / block_s)
    split = max(1, min(tiles, math.ceil(programs / (n * math.ceil(c / block_c)))))
    chunk = math.ceil(tiles / split) * block_s
    return Plan(block_c, block_s, chunk, math.ceil(s / chunk))


def _sm_count(device: torch.device) -> int:
    return _sm_count_of(device.index if device.index is not None else torch.cuda.current_device())


@functools.cache
def _sm_count_of(index: int) -> int:
    return int(torch.cuda.get_device_properties(index).multi_processor_count)


def as_ncs(x: Tensor) -> tuple[Tensor, Tensor]:
    """``(x, x3)``: x, made contiguous only when its strides cannot be seen as (N, C, S), and that
    (N, C, S) view. Shared by the op and its fake so that both agree on the output's strides."""
    n, c = x.shape[:2]
    s = math.prod(x.shape[2:])
    try:
        return x, x.view(n, c, s)
    except RuntimeError:
        x = x.contiguous()
        return x, x.view(n, c, s)


def run(
    x: Tensor,
    weight: Tensor,
    bias: Tensor,
    groups: int,
    eps: float,
    scale: Tensor | None,
    shift: Tensor | None,
    silu: bool,
    programs: int | None = None,
) -> Tensor:
    """Launch the kernels: x (N, C, *spatial), weight/bias (C,), scale/shift None or (N, C) in any
    strides (an expanded tensor is fine) → y like x (same shape, dtype and memory format).

    ``programs``: statistics programs to aim for (default: 4 per SM on a GPU, 1 in the interpreter);
    tests raise it to exercise the split reduction.
    """
    interpret = x.device.type == "cpu"
    kernels = triton_kernels(interpret)
    x, x3 = as_ncs(x)
    y = torch.empty_like(x)
    if y.numel() == 0:
        return y
    y3 = y.view(x3.shape)
    n, c, s = x3.shape
    if programs is None:
        programs = 1 if interpret else PROGRAMS_PER_SM * _sm_count(x.device)
    p = plan(n, c, s, x3.stride(1) < x3.stride(2), programs)
    f32 = functools.partial(torch.empty, dtype=torch.float32, device=x.device)
    pmean, pm2, mean, rstd = f32((n, c, p.split)), f32((n, c, p.split)), f32((n, groups)), f32((n, groups))
    cblocks = math.ceil(c / p.block_c)
    block_r = _pow2(c // groups * p.split, hi=256)
    block_g = _pow2(groups, hi=2048 // block_r)
    scale_shift = scale is not None and shift is not None
    sc = scale if scale is not None and scale_shift else x3  # unread stand-ins without scale-shift
    sh = shift if shift is not None and scale_shift else x3
    with contextlib.nullcontext() if interpret else torch.cuda.device(x.device):  # Triton launches on the current device
        kernels.partial_stats[(p.split, cblocks, n)](
            x3, pmean, pm2, c, s, p.chunk, p.split, *x3.stride(), BLOCK_C=p.block_c, BLOCK_S=p.block_s
        )
        kernels.group_stats[(n, math.ceil(groups / block_g))](
            pmean, pm2, mean, rstd, c, s, groups, p.chunk, p.split, eps, BLOCK_G=block_g, BLOCK_R=block_r
        )
        kernels.normalize[(math.ceil(s / p.block_s), cblocks, n)](
            x3, y3, mean, rstd, weight.contiguous(), bias.contiguous(), sc, sh, c, s, groups,
            *x3.stride(), *y3.stride(), *sc.stride()[:2], *sh.stride()[:2],
            SCALE_SHIFT=scale_shift, SILU=silu, BLOCK_C=p.block_c, BLOCK_S=p.block_s,
        )  # fmt: skip
    return y


def _op(x: Tensor, weight: Tensor, bias: Tensor, groups: int, eps: float, scale: Tensor | None, shift: Tensor | None, silu: bool) -> Tensor:
    return run(x, weight, bias, groups, eps, scale, shift, silu)


def _fake(
    x: Tensor, weight: Tensor, bias: Tensor, groups: int, eps: float, scale: Tensor | None, shift: Tensor | None, silu: bool
) -> Tensor:
    return torch.empty_like(as_ncs(x)[0])


group_norm_act_op: Callable[..., Tensor]
if hasattr(torch.library, "custom_op"):  # torch >= 2.4
    group_norm_act_op = torch.library.custom_op("diffprobe::group_norm_act", mutates_args=())(_op)
    group_norm_act_op.register_fake(_fake)  # type: ignore[attr-defined]
else:  # older torch: a plain call (torch.compile breaks its graph here)
    group_norm_act_op = _op
