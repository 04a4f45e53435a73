"""Representational similarity analysis (RSA), in float64.

[K08] Kriegeskorte, Mur, Bandettini. "Representational similarity analysis – connecting the branches
      of systems neuroscience", Front. Syst. Neurosci. 2008: each representation gives a
      representational dissimilarity matrix (RDM) over pairs of items; two representations are
      compared by the Spearman rank correlation of the upper triangles (i < j) of their RDMs, which
      asks only that the dissimilarities be ordered alike.

Dissimilarities (:data:`DISSIMILARITIES`):
  correlation  d_ij = 1 - r(x_i, x_j), r the Pearson correlation of the two items across the D
               features ([K08]'s choice); an item with constant features has none;
  euclidean    d_ij = ‖x_i - x_j‖.
Spearman ρ is the Pearson correlation of average ranks (tied values share their mean rank, as
scipy.stats.spearmanr) over the M = N(N-1)/2 pairs, taken in row-major order (i < j).

Memory: exact ranks need every one of the M values at once — Θ(N²) cannot be avoided for an exact
Spearman correlation. :func:`doubled_ranks` holds the values (8 bytes per pair), their sort
permutation (8) and the doubled ranks it returns (4 while 2M < 2³², else 8): 20 bytes per pair at
its peak, 4 kept per representation (N = 10,000: 1.0 GB peak; N = 50,000: 25 GB). The streamed
pipeline checks this against max_memory and otherwise refuses, naming the option that compares a
random subset of the items. The RDM itself is only ever formed one (tile, N) block at a time.

Invariances: permuting the items of both representations alike; any increasing transform of the
dissimilarities; for euclidean RDMs, orthogonal transforms, isotropic scaling and translation of
the features; for correlation RDMs, a per-item shift and positive scale.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from diffprobe.pipelines.cka.math import ArrayLike
from diffprobe.pipelines.similarity.math.checks import UndefinedSimilarityError, as_pair, check_items
from diffprobe.registry import Registry


@dataclass(frozen=True)
class Dissimilarity:
    """Rows prepared, prepare(x (N, D), name, in_place) → z (N, D), then d from a Gram tile in place:
    dissim(G (B, N), ‖z_i‖² (B,), ‖z_j‖² (N,)) → G overwritten with d (one tile of memory, not two)."""

    prepare: Callable[[Tensor, str, bool], Tensor]
    dissim: Callable[[Tensor, Tensor, Tensor], Tensor]


def _standardised_rows(x: Tensor, name: str, in_place: bool) -> Tensor:
    mean = x.mean(1, keepdim=True)
    xc = x.sub_(mean) if in_place else x - mean
    norm = torch.linalg.vector_norm(xc, dim=1, keepdim=True)
    flat = (norm[:, 0] == 0).nonzero()
    if flat.numel():
        raise UndefinedSimilarityError(
            f"{flat.numel()} item(s) of {name} have constant features (first: item {int(flat[0])}): their correlation "
            "dissimilarity is undefined; use rdm='euclidean' or drop those items"
        )
    return xc.div_(norm) if in_place else xc / norm


def _euclidean(g: Tensor, sq_rows: Tensor, sq: Tensor) -> Tensor:
    return g.mul_(-2.0).add_(sq_rows[:, None]).add_(sq[None, :]).clamp_(min=0.0).sqrt_()


DISSIMILARITIES: Registry[Dissimilarity] = Registry("RDM dissimilarity")
DISSIMILARITIES.register("correlation", Dissimilarity(_standardised_rows, lambda g, sq_rows, sq: g.neg_().add_(1.0)))
DISSIMILARITIES.register("euclidean", Dissimilarity(lambda x, name, in_place: x, _euclidean))


def pair_count(n: int) -> int:
    """M = N(N-1)/2: the entries of an RDM's upper triangle."""
    return n * (n - 1) // 2


def upper_triangle(
    x: Tensor, rdm: str = "correlation", tile_rows: int | None = None, name: str = "x", overwrite: bool = False
) -> np.ndarray:
    """The RDM of x (N, D) float64 as its upper triangle (M,) float64, pairs (i, j), i < j, row-major.

    Computed (tile_rows, N) rows at a time (None: all at once); the values do not depend on the tiling
    beyond the last bit of rounding of the Gram products. ``overwrite`` lets the rows be prepared in
    place (for a caller that owns x).
    """
    n = x.shape[0]
    check_items(n, 3, "RSA")
    r = DISSIMILARITIES.get(rdm)
    z = r.prepare(x, name, overwrite)
    sq = (z * z).sum(1)
    out = np.empty(pair_count(n), dtype=np.float64)
    tile = n if tile_rows is None else max(1, min(tile_rows, n))
    cols = torch.arange(n, device=x.device)
    for s in range(0, n, tile):
        e = min(s + tile, n)
        d = r.dissim(z[s:e] @ z.T, sq[s:e], sq)
        upper = d[cols[None, :] > cols[s:e, None]]  # row-major: row i contributes j = i+1 … N-1
        start = s * (n - 1) - s * (s - 1) // 2  # pairs in the rows before s
        out[start : start + upper.numel()] = upper.cpu().numpy()
        del d, upper
    return out


def doubled_ranks(v: np.ndarray, chunk: int = 1 << 22) -> np.ndarray:
    """Twice the average ranks (1-based) of v (M,): integers, so exact; uint32 while 2M < 2³², else int64.

    Ties share their mean rank (a group at sorted positions [s, e) gets 2·mean = s + e + 1). Extra
    memory: the sort permutation (8 bytes per value) and the result.
    """
    m = v.size
    order = np.argsort(v, kind="stable")
    dtype = np.uint32 if 2 * m + 2 < 2**32 else np.int64
    out = np.empty(m, dtype=dtype)
    tied = []  # sorted positions p whose value equals the one at p + 1
    for a in range(0, m, chunk):
        b = min(m, a + chunk)
        out[order[a:b]] = np.arange(2 * a + 2, 2 * b + 2, 2, dtype=dtype)
        sv = v[order[a : min(m, b + 1)]]
        tied.append(np.flatnonzero(sv[1:] == sv[:-1]) + a)
    t = np.concatenate(tied)
    if t.size:
        first = np.concatenate(([True], np.diff(t) > 1))
        last = np.concatenate((first[1:], [True]))
        starts, ends = t[first], t[last] + 2  # a run of tied neighbours p … q is the group [p, q + 2)
        lengths = ends - starts
        offsets = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        out[order[np.repeat(starts, lengths) + offsets]] = np.repeat(starts + ends + 1, lengths).astype(dtype)
    return out


def spearman_from_ranks(rx: np.ndarray, ry: np.ndarray, chunk: int = 1 << 22, names: tuple[str, str] = ("x", "y")) -> float:
    """Pearson correlation of two doubled-rank vectors (M,) = Spearman ρ of the values they rank."""
    m = rx.size
    mean = float(m + 1)  # the doubled ranks of M values always sum to M(M+1)
    sxy = sxx = syy = 0.0
    for a in range(0, m, chunk):
        cx = rx[a : a + chunk].astype(np.float64) - mean
        cy = ry[a : a + chunk].astype(np.float64) - mean
        sxy, sxx, syy = sxy + float(cx @ cy), sxx + float(cx @ cx), syy + float(cy @ cy)
    for name, v in zip(names, (sxx, syy)):
        if not v > 0:
            raise UndefinedSimilarityError(f"every dissimilarity of {name} is equal: the RSA rank correlation is undefined")
    return sxy / float(np.sqrt(sxx * syy))


def rsa(x: ArrayLike, y: ArrayLike, rdm: str = "correlation") -> float:
    """RSA ([K08]) of x (N, ...) and y (N, ...): Spearman ρ of their RDMs' upper triangles, in [-1, 1]; symmetric.

    Dense: the whole (N, N) RDM at once.
    """
    xt, yt = as_pair(x, y)
    rx = doubled_ranks(upper_triangle(xt, rdm, name="x"))
    ry = doubled_ranks(upper_triangle(yt, rdm, name="y"))
    return spearman_from_ranks(rx, ry)
