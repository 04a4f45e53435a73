"""CKNNA: centred kernel alignment restricted to mutual nearest neighbours, in float64.

[H24] Huh, Cheung, Wang, Isola. "The Platonic Representation Hypothesis", ICML 2024, App. A.
[K19] Kornblith, Norouzi, Lee, Hinton. "Similarity of neural network representations revisited", ICML 2019.

What is implemented — [H24]'s equations, literally:

  K_ij = ⟨z_i, z_j⟩, L_ij = ⟨w_i, w_j⟩     linear kernels of the prepared rows (cosine neighbours:
                                           L2-normalised rows, as in [H24]; euclidean: raw rows)
  K̄_ij = K_ij - 1/N Σ_l K_il              each kernel row centred by its mean over all N items
  α_ij = 1[i ≠ j, j ∈ S_z(i), j ∈ S_w(i)]  mutual k-NN mask (S: k-NN sets, see math.knn)
  Align(K, L) = Σ_i Σ_j α_ij K̄_ij L̄_ij
  CKNNA = Align(K, L) / sqrt(Align(K, K) · Align(L, L))

where Align(K, K) takes α with both spaces equal to z, i.e. over the pairs j ∈ S_z(i). By
Cauchy–Schwarz CKNNA ∈ [-1, 1]; CKNNA(x, x) = 1; it is symmetric. With k = N-1 the mask keeps every
i ≠ j and CKNNA is [K19]'s linear CKA with row centring KH in place of HKH and the diagonal left out.

Not implemented: the authors' released code, as we understand it, instead evaluates an unbiased HSIC
estimator on the masked Grams α∘K, α∘L; its values differ from these. The two agree in spirit
(alignment of kernels on shared neighbours) but are not interchangeable in a table.

Invariances: orthogonal transforms and isotropic scaling of either input (cosine: the normalisation
removes the scale; euclidean: K scales by c², the ratio does not); not translation.

Cost: the neighbour tables (O(N²·D) time, one (tile, N) tile of memory), then O(N·k·log k).
"""

from __future__ import annotations

import math

from diffprobe.errors import ConfigError
from diffprobe.pipelines.cka.math import ArrayLike
from diffprobe.pipelines.similarity.math.checks import UndefinedSimilarityError, as_pair
from diffprobe.pipelines.similarity.math.knn import NeighbourTable, members, neighbour_table


def cknna_tables(a: NeighbourTable, b: NeighbourTable, names: tuple[str, str] = ("x", "y")) -> float:
    """CKNNA from the neighbour tables (N, k) of two representations over the same items."""
    if a.index.shape != b.index.shape:
        raise ConfigError(f"expected neighbour tables of one shape, got {tuple(a.index.shape)} and {tuple(b.index.shape)}")
    hit, pos = members(b.index, a.index)  # j ∈ S_a(i) that are also in S_b(i), and where
    ka = a.kernel - a.row_mean[:, None]  # K̄_ij at j ∈ S_a(i)
    kb_all = b.kernel - b.row_mean[:, None]  # L̄_ij at j ∈ S_b(i)
    kb = kb_all.gather(1, pos)  # L̄_ij at the same j as ka (meaningful where hit)
    cross = float((ka * kb).masked_fill(~hit, 0.0).sum())
    self_a, self_b = float((ka * ka).sum()), float((kb_all * kb_all).sum())
    for name, v in zip(names, (self_a, self_b)):
        if not v > 0:
            raise UndefinedSimilarityError(
                f"{name}'s centred kernel is zero on all its k-NN pairs (Align = {v:.3g}): CKNNA is undefined; "
                "its items are (nearly) identical — check the features or use another metric"
            )
    return cross / math.sqrt(self_a * self_b)


def cknna(x: ArrayLike, y: ArrayLike, k: int = 10, neighbours: str = "cosine") -> float:
    """CKNNA ([H24], see module docstring) of x (N, ...) and y (N, ...) in [-1, 1]. Dense: O(N²) memory."""
    xt, yt = as_pair(x, y)
    return cknna_tables(neighbour_table(xt, k, neighbours, name="x"), neighbour_table(yt, k, neighbours, name="y"))
