"""Triton source of the fused GroupNorm (+ scale-shift) (+ SiLU): three kernels, undecorated.

The functions here are plain Python; :func:`diffprobe.extract.adm.kernels.group_norm_op.triton_kernels`
wraps them with ``triton.jit`` once per mode (compiled, or Triton's CPU interpreter), because the
interpreter is chosen when a function is decorated. Importing this module imports triton, so only
that function imports it. No ``from __future__ import annotations`` here: Triton reads the
``tl.constexpr`` annotations as objects.

Every tensor is seen as ``(N, C, S)`` through its strides (S = H·W, or T for attention), so one
source serves NCHW-contiguous, channels-last and 3-D inputs; Triton specialises a stride of 1 and
lays each tile out along the contiguous axis. With ``G`` groups of ``Cg = C / G`` channels:

1. :func:`partial_stats` — grid ``(split, ⌈C/BLOCK_C⌉, N)``: per channel, the mean and the sum of
   squared deviations (M2) of one spatial chunk, accumulated over tiles with Chan et al.'s pairwise
   update (1979), in fp32.
2. :func:`group_stats` — grid ``(N, ⌈G/BLOCK_G⌉)``: combines each group's ``Cg·split`` partials into its mean and
   ``rstd = 1/sqrt(M2/(Cg·S) + eps)`` (the biased variance, as ``F.group_norm``).
3. :func:`normalize` — grid ``(⌈S/BLOCK_S⌉, ⌈C/BLOCK_C⌉, N)``: ``y = (x - mean)·rstd·w + b``, then
   ``y·(1 + scale) + shift`` and ``y·sigmoid(y)`` as asked, all in fp32, stored once in y's dtype.
"""

import triton.language as tl

# Only builtins and tl.reduce below, no @triton.jit helpers of triton.language (tl.sum, tl.zeros,
# tl.sigmoid): those were decorated when triton was imported, as compiled functions unless
# TRITON_INTERPRET=1 was already set then, and an interpreted kernel cannot call them. tl.sum's own
# combine function is what the interpreter recognises (it then reduces with numpy).
_add = tl.standard._sum_combine


def partial_stats(x_ptr, pmean_ptr, pm2_ptr, C, S, chunk, split, sxn, sxc, sxs, BLOCK_C: tl.constexpr, BLOCK_S: tl.constexpr):
    """(mean, M2) of ``x[n, c, k·chunk : (k+1)·chunk]`` per channel → partials at ``(n·C + c)·split + k``."""
    k = tl.program_id(0)
    n = tl.program_id(2).to(tl.int64)
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    cmask = c < C
    base = x_ptr + n * sxn + c[:, None] * sxc
    start = k * chunk
    end = tl.minimum(start + chunk, S)
    mean = tl.full([BLOCK_C], 0.0, tl.float32)
    m2 = tl.full([BLOCK_C], 0.0, tl.float32)
    for s0 in range(start, end, BLOCK_S):
        s = s0 + tl.arange(0, BLOCK_S)
        mask = cmask[:, None] & (s < end)[None, :]
        v = tl.load(base + s[None, :] * sxs, mask=mask, other=0.0).to(tl.float32)
        seen = (s0 - start) * 1.0  # elements per channel already in (mean, m2)
        count = tl.minimum(end - s0, BLOCK_S) * 1.0
        tile_mean = tl.reduce(v, 1, _add) / count
        dev = tl.where(mask, v - tile_mean[:, None], 0.0)
        tile_m2 = tl.reduce(dev * dev, 1, _add)
        delta = tile_mean - mean
        total = seen + count
        mean = mean + delta * (count / total)
        m2 = m2 + tile_m2 + delta * delta * (seen * count / total)
    out = (n * C + c) * split + k
    tl.store(pmean_ptr + out, mean, mask=cmask)
    tl.store(pm2_ptr + out, m2, mask=cmask)


def group_stats(pmean_ptr, pm2_ptr, mean_ptr, rstd_ptr, C, S, G, chunk, split, eps, BLOCK_G: tl.constexpr, BLOCK_R: tl.constexpr):
    """Mean and rstd of groups ``j·BLOCK_G …`` of item n (program ``(n, j)``) from their channels' partials."""
    n = tl.program_id(0).to(tl.int64)
    g = tl.program_id(1) * BLOCK_G + tl.arange(0, BLOCK_G)
    gmask = g < G
    num = (C // G) * split  # a group's partials are contiguous: channel-major, chunk-minor
    rows = n * C * split + g[:, None] * num
    total = (C // G) * S * 1.0  # float arithmetic also when Triton made the ints constants (== 1)
    acc = tl.full([BLOCK_G, BLOCK_R], 0.0, tl.float32)
    for r0 in range(0, num, BLOCK_R):
        r = r0 + tl.arange(0, BLOCK_R)
        mask = gmask[:, None] & (r < num)[None, :]
        count = tl.minimum(S - (r % split) * chunk, chunk) * 1.0  # elements behind each partial
        acc += tl.load(pmean_ptr + rows + r[None, :], mask=mask, other=0.0) * count[None, :]
    mean = tl.reduce(acc, 1, _add) / total
    acc = tl.full([BLOCK_G, BLOCK_R], 0.0, tl.float32)
    for r0 in range(0, num, BLOCK_R):
        r = r0 + tl.arange(0, BLOCK_R)
        mask = gmask[:, None] & (r < num)[None, :]
        count = tl.minimum(S - (r % split) * chunk, chunk) * 1.0
        delta = tl.load(pmean_ptr + rows + r[None, :], mask=mask, other=0.0) - mean[:, None]
        m2 = tl.load(pm2_ptr + rows + r[None, :], mask=mask, other=0.0)
        acc += tl.where(mask, m2 + count[None, :] * delta * delta, 0.0)
    var = tl.reduce(acc, 1, _add) / total
    tl.store(mean_ptr + n * G + g, mean, mask=gmask)
    tl.store(rstd_ptr + n * G + g, 1.0 / tl.sqrt(var + eps), mask=gmask)


def normalize(
    x_ptr,
    y_ptr,
    mean_ptr,
    rstd_ptr,
    w_ptr,
    b_ptr,
    scale_ptr,
    shift_ptr,
    C,
    S,
    G,
    sxn,
    sxc,
    sxs,
    syn,
    syc,
    sys_,
    ssn,
    ssc,
    stn,
    stc,
    SCALE_SHIFT: tl.constexpr,
    SILU: tl.constexpr,
    BLOCK_C: tl.constexpr,
    BLOCK_S: tl.constexpr,
):
    """One (BLOCK_C, BLOCK_S) tile of item n: normalise, affine, [scale-shift], [SiLU], store."""
    n = tl.program_id(2).to(tl.int64)
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    s = tl.program_id(0) * BLOCK_S + tl.arange(0, BLOCK_S)
    cmask = c < C
    mask = cmask[:, None] & (s < S)[None, :]
    g = c // (C // G)
    mean = tl.load(mean_ptr + n * G + g, mask=cmask, other=0.0)
    a = tl.load(rstd_ptr + n * G + g, mask=cmask, other=0.0) * tl.load(w_ptr + c, mask=cmask, other=0.0).to(tl.float32)
    b = tl.load(b_ptr + c, mask=cmask, other=0.0).to(tl.float32)
    v = tl.load(x_ptr + n * sxn + c[:, None] * sxc + s[None, :] * sxs, mask=mask, other=0.0).to(tl.float32)
    y = (v - mean[:, None]) * a[:, None] + b[:, None]
    if SCALE_SHIFT:
        scale = tl.load(scale_ptr + n * ssn + c * ssc, mask=cmask, other=0.0).to(tl.float32)
        shift = tl.load(shift_ptr + n * stn + c * stc, mask=cmask, other=0.0).to(tl.float32)
        y = y * (1.0 + scale[:, None]) + shift[:, None]
    if SILU:
        y = y / (1.0 + tl.exp(-y))  # y·sigmoid(y)
    tl.store(y_ptr + n * syn + c[:, None] * syc + s[None, :] * sys_, y.to(y_ptr.dtype.element_ty), mask=mask)
