"""Exact linear HSIC for many pairs of feature arrays, streamed over row chunks in feature space.

For every requested pair (a, b) the moments of :class:`~diffprobe.pipelines.cka.math.PairMoments`
(XᵀY, column sums, squared-norm sums) are summed chunk by chunk, then turned into biased or unbiased
HSIC ([K19] eq. 4–5, [S12] eq. 5 in feature space). No N×N matrix is ever formed.

Memory: a pass holds, for its pairs, Σ 8·Da·Db bytes of cross moments, plus row chunks of its
arrays (≈ 32·R·ΣD bytes: raw chunk, prefetched next chunk, float64 chunk and its square).
Arrays are grouped so that a pass's accumulators fit half of max_memory (group width
W = sqrt(max_memory / 16) features: 11,585 for 2 GiB), with one pass per pair of groups; R is then
chosen so the chunks fit the rest. When everything fits (e.g. 19 blocks of a few hundred channels,
or 37 blocks of the 256 model at p = 1 with 8 GiB) one read of the data gives the whole L×L matrix.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from diffprobe.errors import ConfigError
from diffprobe.pipelines.cka.math import DegenerateInputError, Estimator, PairMoments
from diffprobe.pipelines.cka.source import NonFiniteRows, Source, chunk_bounds, chunk_rows_for, iter_chunks
from diffprobe.progress import bar_disabled
from diffprobe.sizes import format_bytes

log = logging.getLogger(__name__)

Pair = tuple[int, int]


@dataclass(frozen=True)
class Pass:
    """One read of the data: the sources it reads and the pairs whose moments it accumulates."""

    keys: tuple[int, ...]
    pairs: tuple[Pair, ...]

    def accumulator_bytes(self, dims: Sequence[int]) -> int:
        """Bytes of the pass's running sums: Σ_pairs Da·Db cross moments plus O(W·n_keys) small ones."""
        width, count = sum(dims[k] for k in self.keys), len(self.keys)
        return 8 * (sum(dims[a] * dims[b] for a, b in self.pairs) + width * (2 * count + 4) + count * count)


@dataclass(frozen=True)
class FeaturePlan:
    passes: tuple[Pass, ...]
    chunk_rows: int
    peak_bytes: int  # estimated: largest pass's accumulators + its chunk buffers


def group_keys(dims: Sequence[int], width: int) -> list[int]:
    """Group index per key: consecutive keys packed while their summed dimension stays ≤ width."""
    groups, g, used = [], 0, 0
    for d in dims:
        if used and used + d > width:
            g, used = g + 1, 0
        groups.append(g)
        used += d
    return groups


def plan_features(
    sources: Sequence[Source], pairs: Sequence[Pair], max_memory: int, chunk_rows: int | None = None
) -> FeaturePlan:
    """Passes covering ``pairs`` within ``max_memory``; raises ConfigError when one pair alone cannot fit."""
    dims = [s.dim for s in sources]
    worst = max(pairs, key=lambda p: dims[p[0]] * dims[p[1]])
    need = Pass(tuple(sorted(set(worst))), (worst,)).accumulator_bytes(dims)
    if need > max_memory:
        raise ConfigError(
            f"feature-space linear CKA of {sources[worst[0]].label} (D={dims[worst[0]]}) with {sources[worst[1]].label} "
            f"(D={dims[worst[1]]}) needs {format_bytes(need)} of accumulators, more than max_memory {format_bytes(max_memory)}; "
            "raise --max-memory, use a smaller --pool, or --estimator minibatch"
        )
    group = group_keys(dims, math.isqrt(max_memory // 16))
    tiles: dict[Pair, list[Pair]] = {}
    for a, b in pairs:
        ga, gb = sorted((group[a], group[b]))
        tiles.setdefault((ga, gb), []).append((a, b))
    passes = tuple(Pass(tuple(sorted({k for p in ps for k in p})), tuple(ps)) for _, ps in sorted(tiles.items()))
    rows = chunk_rows or min(chunk_rows_for([sources[k] for k in p.keys], max(0, max_memory - p.accumulator_bytes(dims)))
                             for p in passes)  # fmt: skip
    rows = max(1, min(rows, sources[0].n))
    peak = max(p.accumulator_bytes(dims) + 32 * rows * sum(dims[k] for k in p.keys) for p in passes)
    return FeaturePlan(passes, rows, peak)


def _runs(cols: Sequence[int]) -> list[tuple[int, int]]:
    """Consecutive positions grouped into [first, last] runs: [0, 1, 2, 5, 6] → [(0, 2), (5, 6)]."""
    runs: list[tuple[int, int]] = []
    for c in cols:
        if runs and c == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], c)
        else:
            runs.append((c, c))
    return runs


class _PassMoments:
    """Running sums for one pass, over Z = [X_k1 | X_k2 | …] (R, W), the pass's arrays side by side.

    Per chunk: one GEMM per (array a, run of contiguous partners b) for the cross moments X_aᵀX_b,
    and a few whole-Z operations for the rest, so the op count does not grow with the pair count:
      K = (Z∘Z)·E (R, n_keys) row squared norms per array (E: column → array indicator);
      P += KᵀK (Σ k_a k_b for all pairs);  V += ZᵀK (Σ k_b x_a for all pairs);  q += Σ K;  s += Σ Z.
    """

    def __init__(self, sources: Sequence[Source], p: Pass, rows: int, device: torch.device) -> None:
        f64 = torch.float64
        self.keys, self.sources, self.device = p.keys, sources, device
        self.pos = {k: i for i, k in enumerate(p.keys)}
        dims = [sources[k].dim for k in p.keys]
        self.off = [0, *itertools.accumulate(dims)]
        width = self.off[-1]
        self.col = {k: slice(self.off[i], self.off[i + 1]) for i, k in enumerate(p.keys)}
        self.ind = torch.zeros(width, len(dims), dtype=f64, device=device)
        for i in range(len(dims)):
            self.ind[self.off[i] : self.off[i + 1], i] = 1.0
        partners: dict[int, list[int]] = {}
        for a, b in p.pairs:
            partners.setdefault(a, []).append(self.pos[b])
        self.runs = {a: _runs(sorted(set(bs))) for a, bs in partners.items()}
        self.cross = {(a, r): torch.zeros(dims[self.pos[a]], self.off[r[1] + 1] - self.off[r[0]], dtype=f64, device=device)
                      for a, rs in self.runs.items() for r in rs}  # fmt: skip
        self.z = torch.empty(rows, width, dtype=f64, device=device)
        self.s = torch.zeros(width, dtype=f64, device=device)
        self.v = torch.zeros(width, len(dims), dtype=f64, device=device)
        self.p = torch.zeros(len(dims), len(dims), dtype=f64, device=device)
        self.q = torch.zeros(len(dims), dtype=f64, device=device)
        self.shift: Tensor | None = None
        self.lo = self.hi = self.s
        self.n = 0

    def add(self, raws: Sequence[np.ndarray]) -> None:
        r = raws[0].shape[0]
        z = self.z[:r]
        for k, raw in zip(self.keys, raws):
            z[:, self.col[k]].copy_(torch.from_numpy(raw).to(self.device, non_blocking=True))
        if not bool(torch.isfinite(z).all()):
            bad = next(k for k in self.keys if not bool(torch.isfinite(z[:, self.col[k]]).all()))
            raise NonFiniteRows(self.sources[bad].label)
        if self.shift is None:
            self.shift, self.lo, self.hi = z.mean(0), z.amin(0), z.amax(0)
        else:
            self.lo, self.hi = torch.minimum(self.lo, z.amin(0)), torch.maximum(self.hi, z.amax(0))
        z -= self.shift
        sq = (z * z) @ self.ind
        self.s += z.sum(0)
        self.q += sq.sum(0)
        self.p += sq.T @ sq
        self.v += z.T @ sq
        for (a, (first, last)), acc in self.cross.items():
            acc += z[:, self.col[a]].T @ z[:, self.off[first] : self.off[last + 1]]
        self.n += r

    def check_not_constant(self) -> None:
        for k in self.keys:
            if self.n and bool((self.lo[self.col[k]] == self.hi[self.col[k]]).all()):
                raise DegenerateInputError(f"{self.sources[k].label} is constant across all {self.n} items: CKA is undefined")

    def moments(self, a: int, b: int) -> PairMoments:
        ia, ib = self.pos[a], self.pos[b]
        run = next(r for r in self.runs[a] if r[0] <= ib <= r[1])
        cross = self.cross[(a, run)][:, self.off[ib] - self.off[run[0]] : self.off[ib + 1] - self.off[run[0]]]
        ca, cb = self.col[a], self.col[b]
        return PairMoments(
            n=self.n, cross=cross, sum_x=self.s[ca], sum_y=self.s[cb], sqn_x=float(self.q[ia]), sqn_y=float(self.q[ib]),
            sqn_xy=float(self.p[ia, ib]), x_by_sqn_y=self.v[ca, ib], y_by_sqn_x=self.v[cb, ia],
        )


def run_pass(
    sources: Sequence[Source], p: Pass, estimator: Estimator, chunk_rows: int, device: torch.device, bar: tqdm | None = None
) -> dict[Pair, float]:
    """One read of the sources in ``p``: HSIC (under ``estimator``) of every pair of ``p``.

    Each array is shifted by the mean of its first chunk before accumulating (both estimators are
    translation invariant), which keeps the float64 sums well conditioned for features far from 0.
    """
    n = sources[0].n
    acc = _PassMoments(sources, p, min(chunk_rows, n), device)
    for start, stop, raws in iter_chunks([sources[k] for k in p.keys], chunk_bounds(n, chunk_rows)):
        acc.add(raws)
        if bar is not None:
            bar.update(stop - start)
    acc.check_not_constant()
    return {q: estimator.from_moments(acc.moments(*q)) for q in p.pairs}


def hsic_features(
    sources: Sequence[Source], pairs: Sequence[Pair], estimator: Estimator, max_memory: int, device: torch.device,
    chunk_rows: int | None = None,
) -> tuple[dict[Pair, float], dict[str, object]]:
    """Exact linear HSIC of ``pairs`` of ``sources`` (each (N, D_k)), streamed; returns values and run facts."""
    n = sources[0].n
    estimator.check_n(n)
    plan = plan_features(sources, pairs, max_memory, chunk_rows)
    log.info(
        "linear CKA in feature space: %d pairs of %d arrays over %d items, %d pass(es) of %d-row chunks, ~%s peak",
        len(pairs), len(sources), n, len(plan.passes), plan.chunk_rows, format_bytes(plan.peak_bytes),
    )
    out: dict[Pair, float] = {}
    with tqdm(total=n * len(plan.passes), unit="item", desc="CKA (streamed)", disable=bar_disabled()) as bar:
        for p in plan.passes:
            out.update(run_pass(sources, p, estimator, plan.chunk_rows, device, bar))
    return out, {"passes": len(plan.passes), "chunk_rows": plan.chunk_rows, "estimated_peak_bytes": plan.peak_bytes}
