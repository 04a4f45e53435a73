"""Streamed moments over row sources: per-source centred moments, then cross moments of many pairs.

Two kinds of pass, each reading its sources once in row chunks (no N×N matrix, no N-sized copy):

  moments_pass  mean, ‖X̃‖²_F and (for CCA) the scatter X̃ᵀX̃ (D, D) of one source. Each chunk is
                shifted by the mean of the first chunk before summing (translation does not change
                centred moments), which keeps the float64 sums well conditioned far from 0.
  cross_passes  Σ_i t_a(x_i)ᵀ t_b(y_i) for pairs (a, b), with t_k(x) = (x - μ_k) P_k a per-source
                projection (P_k: CCA's whitening W (D, k), or the identity for Procrustes), so the
                accumulators are (k_a, k_b) — what the finishing functions of ``math`` need.

Memory: moments_pass holds 8·D² bytes (scatter) plus chunk buffers; a cross pass holds Σ 8·k_a·k_b
bytes of accumulators for its pairs (packed so that half of max_memory is not exceeded) plus
~32·R·ΣD bytes of row chunks.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from diffprobe.errors import ConfigError
from diffprobe.pipelines.cka.source import Source, chunk_bounds, iter_chunks
from diffprobe.pipelines.similarity.config import SimilarityConfig
from diffprobe.pipelines.similarity.math.moments import Moments
from diffprobe.pipelines.similarity.metrics import Pair
from diffprobe.pipelines.similarity.read import as_device_rows, read_rows
from diffprobe.sizes import format_bytes

log = logging.getLogger(__name__)


def moments_pass(source: Source, chunk_rows: int, device: torch.device, full: bool = True) -> Moments:
    """Centred moments of ``source`` (N, D), streamed; ``full=False`` skips the (D, D) scatter."""
    d = source.dim
    shift: Tensor | None = None
    total = torch.zeros(d, dtype=torch.float64, device=device)
    scatter = torch.zeros(d, d, dtype=torch.float64, device=device) if full else None
    sumsq, n = 0.0, 0
    for _, _, (raw,) in iter_chunks([source], chunk_bounds(source.n, chunk_rows)):
        z = as_device_rows(raw, device, source.label)
        if shift is None:
            shift = z.mean(0)
        z -= shift
        total += z.sum(0)
        sumsq += float((z * z).sum())
        if scatter is not None:
            scatter.addmm_(z.T, z)
        n += z.shape[0]
    if shift is None:
        shift = torch.zeros(d, dtype=torch.float64, device=device)
    mean = total / max(n, 1)
    if scatter is not None:
        scatter -= n * torch.outer(mean, mean)
    return Moments(n, shift + mean, sumsq - n * float(mean @ mean), scatter)


@dataclass(frozen=True)
class Projection:
    """t(x) = (x - mean) @ matrix for chunks x (R, D); matrix None is the identity."""

    mean: Tensor  # (D,)
    matrix: Tensor | None  # (D, k)

    @property
    def width(self) -> int:
        return int(self.mean.shape[0] if self.matrix is None else self.matrix.shape[1])

    def apply(self, x: Tensor) -> Tensor:
        x = x - self.mean
        return x if self.matrix is None else x @ self.matrix


def pack_passes(pairs: Sequence[Pair], widths: dict[int, int], budget: int, labels: Sequence[str]) -> list[list[Pair]]:
    """Pairs packed greedily, in order, into passes whose accumulators (Σ 8·k_a·k_b bytes) fit ``budget``."""
    passes: list[list[Pair]] = []
    used = budget + 1
    for a, b in pairs:
        need = 8 * widths[a] * widths[b]
        if need > budget:
            raise ConfigError(
                f"the cross moments of {labels[a]} (width {widths[a]}) and {labels[b]} (width {widths[b]}) need "
                f"{format_bytes(need)}, more than half of max_memory ({format_bytes(budget)}); raise max_memory or use a "
                "smaller pool"
            )
        if used + need > budget:
            passes.append([])
            used = 0
        passes[-1].append((a, b))
        used += need
    return passes


def cross_passes(
    sources: Sequence[Source], projections: dict[int, Projection], pairs: Sequence[Pair], cfg: SimilarityConfig,
    device: torch.device,
) -> tuple[dict[Pair, Tensor], int]:
    """Σ_i t_a(x_i)ᵀ t_b(y_i) (k_a, k_b) for every pair, over as few reads as max_memory allows; returns
    the sums and the number of passes."""
    widths = {k: p.width for k, p in projections.items()}
    passes = pack_passes(pairs, widths, cfg.max_memory // 2, [s.label for s in sources])
    out: dict[Pair, Tensor] = {}
    for group in passes:
        keys = sorted({k for p in group for k in p})
        srcs = [sources[k] for k in keys]
        acc = {p: torch.zeros(widths[p[0]], widths[p[1]], dtype=torch.float64, device=device) for p in group}
        rows = read_rows(srcs, cfg, cfg.max_memory - sum(a.numel() * 8 for a in acc.values()))
        log.debug("cross moments of %d pair(s) over %d array(s), %d-row chunks", len(group), len(keys), rows)
        for _, _, raws in iter_chunks(srcs, chunk_bounds(srcs[0].n, rows)):
            t = {k: projections[k].apply(as_device_rows(raw, device, sources[k].label)) for k, raw in zip(keys, raws)}
            for (a, b), m in acc.items():
                m.addmm_(t[a].T, t[b])
        out.update(acc)
    return out, len(passes)
