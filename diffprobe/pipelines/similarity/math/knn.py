"""k-nearest-neighbour sets and the k-NN alignment metrics of Huh et al., in float64.

[H24] Huh, Cheung, Wang, Isola. "The Platonic Representation Hypothesis", ICML 2024, App. A.

  mutual k-NN   m_NN(X, Y) = 1/N Σ_i |S_X(i) ∩ S_Y(i)| / k, where S_X(i) is the set of the k nearest
                neighbours of item i among the other N-1 items in representation X.
  cycle k-NN    1/N Σ_i 1[∃ j ∈ S_Y(i) : i ∈ S_X(j)]: step from i to a neighbour in Y, step back along
                the neighbour relation of X; a hit when the walk can return to i. Not symmetric:
                cycle_knn(x, y) walks forward in y and back in x.
  CKNNA         :mod:`~diffprobe.pipelines.similarity.math.cknna` (built on the same neighbour tables).

What "nearest" means (:data:`NEIGHBOURS`):
  cosine     rows L2-normalised, j ranked for i by ⟨x̂_i, x̂_j⟩, largest first ([H24]'s setting);
  euclidean  raw rows, ranked by ‖x_i - x_j‖, smallest first, computed as ⟨x_i, x_j⟩ - ½‖x_j‖² (largest
             first), the same order since ‖x_i‖² is constant along row i.

Tie rule (exact and deterministic): each row's set is the exact top k of its scores, the item itself
excluded; among candidates whose score equals the k-th largest, the smaller item indices are taken.
A row's set depends on that row's scores only, so any tiling of the rows gives the same sets; only
scores equal to within the last bit of rounding (which products of different shapes, or CPU against
CUDA, may round differently) can swap.

Cost: O(N²·D) time; memory O(N·D) for the rows plus one (tile, N) score tile (O(N²) at tile = N).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from diffprobe.errors import ConfigError
from diffprobe.pipelines.cka.math import ArrayLike
from diffprobe.pipelines.similarity.math.checks import UndefinedSimilarityError, as_pair, check_k, check_not_constant
from diffprobe.registry import Registry


@dataclass(frozen=True)
class NeighbourRule:
    """How rows are prepared, prepare(x (N, D), name, in_place) → z (N, D), and scored,
    score(kernel tile (B, N), ‖z_j‖² (N,)) → (B, N), larger = nearer. The kernel K_ij = ⟨z_i, z_j⟩ is
    taken on the prepared rows z; in_place lets prepare overwrite x (a caller that owns it saves a copy)."""

    prepare: Callable[[Tensor, str, bool], Tensor]
    score: Callable[[Tensor, Tensor], Tensor]


def _unit_rows(x: Tensor, name: str, in_place: bool) -> Tensor:
    norm = torch.linalg.vector_norm(x, dim=1, keepdim=True)
    zero = (norm[:, 0] == 0).nonzero()
    if zero.numel():
        raise UndefinedSimilarityError(
            f"{zero.numel()} item(s) of {name} have all-zero features (first: item {int(zero[0])}): their cosine "
            "neighbours are undefined; use neighbours='euclidean' or drop those items"
        )
    return x.div_(norm) if in_place else x / norm


NEIGHBOURS: Registry[NeighbourRule] = Registry("neighbour rule")
NEIGHBOURS.register("cosine", NeighbourRule(_unit_rows, lambda g, sqn: g))
NEIGHBOURS.register("euclidean", NeighbourRule(lambda x, name, in_place: x, lambda g, sqn: torch.sub(g, sqn[None, :], alpha=0.5)))


@dataclass(frozen=True)
class NeighbourTable:
    """Everything the k-NN metrics need of one representation, O(N·k) instead of O(N²)."""

    index: Tensor  # (N, k) int64: each item's k neighbours, in ascending item order
    kernel: Tensor  # (N, k) float64: K_ij = ⟨z_i, z_j⟩ at those neighbours (z: prepared rows)
    row_mean: Tensor  # (N,) float64: m_i = 1/N Σ_l K_il = ⟨z_i, z̄⟩

    @property
    def n(self) -> int:
        return int(self.index.shape[0])

    @property
    def k(self) -> int:
        return int(self.index.shape[1])


def top_k(score: Tensor, k: int) -> Tensor:
    """Column indices (B, k), ascending, of the k largest entries of each row of score (B, N).

    Exact; entries equal to a row's k-th largest value are taken in ascending column order. Only the
    rows whose k-th and (k+1)-th largest values tie pay for the tie resolution.
    """
    m = min(k + 1, score.shape[1])
    vals, idx = torch.topk(score, m, dim=1)
    idx = idx[:, :k].clone()
    if m > k:
        tied = (vals[:, k - 1] == vals[:, k]).nonzero()[:, 0]
        if tied.numel():
            s, t = score[tied], vals[tied, k - 1 : k]
            above, at = s > t, s == t
            need = k - above.sum(1, keepdim=True)
            take = above | (at & (at.cumsum(1) <= need))
            idx[tied] = take.nonzero()[:, 1].view(-1, k)
    return idx.sort(1).values


def neighbour_table(
    x: Tensor, k: int, rule: str = "cosine", tile_rows: int | None = None, name: str = "x", overwrite: bool = False
) -> NeighbourTable:
    """The k-NN table of x (N, D) float64 under ``rule``, scoring (tile_rows, N) tiles at a time.

    ``tile_rows=None`` scores all N rows at once (the dense form); any tiling gives the same table.
    ``overwrite`` lets the rule prepare x in place (for a caller that owns x: one (N, D) copy less).
    """
    n = x.shape[0]
    check_k(k, n)
    check_not_constant(x, name, "k-NN alignment")
    r = NEIGHBOURS.get(rule)
    z = r.prepare(x, name, overwrite)
    sqn = (z * z).sum(1)
    tile = n if tile_rows is None else max(1, min(tile_rows, n))
    index = torch.empty(n, k, dtype=torch.int64, device=x.device)
    kernel = torch.empty(n, k, dtype=torch.float64, device=x.device)
    for s in range(0, n, tile):
        e = min(s + tile, n)
        g = z[s:e] @ z.T
        sc = r.score(g, sqn)  # may be g itself: only the diagonal is overwritten, and it is never gathered
        sc[torch.arange(e - s, device=x.device), torch.arange(s, e, device=x.device)] = float("-inf")
        idx = top_k(sc, k)
        index[s:e] = idx
        kernel[s:e] = g.gather(1, idx)
        del g, sc
    return NeighbourTable(index, kernel, z @ z.mean(0))


def members(sets: Tensor, queries: Tensor) -> tuple[Tensor, Tensor]:
    """For sets (R, k) ascending per row and queries (R, m): (hit (R, m): queries[r, c] ∈ sets[r],
    pos (R, m): its column in sets[r] where hit)."""
    sets, queries = sets.contiguous(), queries.contiguous()
    pos = torch.searchsorted(sets, queries).clamp_(max=sets.shape[1] - 1)
    return sets.gather(1, pos) == queries, pos


def _same_items(a: NeighbourTable, b: NeighbourTable) -> None:
    if a.index.shape != b.index.shape:
        raise ConfigError(f"expected neighbour tables of one shape, got {tuple(a.index.shape)} and {tuple(b.index.shape)}")


def mutual_knn_tables(a: NeighbourTable, b: NeighbourTable) -> float:
    """Mutual k-NN alignment ([H24]) from two neighbour tables over the same N items and k."""
    _same_items(a, b)
    hit, _ = members(b.index, a.index)
    return float(hit.sum()) / (a.n * a.k)


def cycle_knn_tables(x: NeighbourTable, y: NeighbourTable, max_entries: int = 2**22) -> float:
    """Cycle k-NN ([H24]): the fraction of items i with some j ∈ S_y(i) such that i ∈ S_x(j).

    Memory: (rows, k, k) index blocks of at most ``max_entries`` entries.
    """
    _same_items(x, y)
    n, k = x.n, x.k
    rows = max(1, max_entries // (k * k))
    hits = 0
    for s in range(0, n, rows):
        e = min(n, s + rows)
        back = x.index[y.index[s:e].reshape(-1)]  # (c·k, k): x-neighbours of each forward step j
        me = torch.arange(s, e, device=x.index.device).repeat_interleave(k)[:, None]
        hit, _ = members(back, me)
        hits += int(hit.view(e - s, k).any(1).sum())
    return hits / n


def mutual_knn(x: ArrayLike, y: ArrayLike, k: int = 10, neighbours: str = "cosine") -> float:
    """Mutual k-NN alignment ([H24]) of x (N, ...) and y (N, ...) in [0, 1]; symmetric.

    Invariant to orthogonal transforms and isotropic scaling of either input (and to translations
    with ``neighbours='euclidean'``). Dense: O(N²) memory.
    """
    xt, yt = as_pair(x, y)
    return mutual_knn_tables(neighbour_table(xt, k, neighbours, name="x"), neighbour_table(yt, k, neighbours, name="y"))


def cycle_knn(x: ArrayLike, y: ArrayLike, k: int = 10, neighbours: str = "cosine") -> float:
    """Cycle k-NN ([H24]) of x (N, ...) and y (N, ...) in [0, 1]: forward along y's k-NN, back along x's.

    Same invariances as :func:`mutual_knn`. Dense: O(N²) memory.
    """
    xt, yt = as_pair(x, y)
    return cycle_knn_tables(neighbour_table(xt, k, neighbours, name="x"), neighbour_table(yt, k, neighbours, name="y"))
