"""SVCCA and PWCCA: canonical correlations computed from centred scatter matrices, in float64.

[R17] Raghu, Gilmer, Yosinski, Sohl-Dickstein. "SVCCA: Singular Vector Canonical Correlation Analysis
      for Deep Learning Dynamics and Interpretability", NeurIPS 2017, §2: (1) SVD of each centred
      representation, keeping the top directions that explain a fraction (0.99) of its variance;
      (2) CCA between the two reduced representations; SVCCA = ρ̄ = 1/c Σ_i ρ_i, c = min(kx, ky).
[M18] Morcos, Raghu, Bengio. "Insights on representational similarity in neural networks with
      canonical correlation", NeurIPS 2018, §2.2: PWCCA = Σ_i α_i ρ_i with α_i = α̃_i / Σ_j α̃_j,
      α̃_i = Σ_j |⟨h_i, x_j⟩|, h_i (N,) the i-th canonical variate of X (unit norm) and x_j (N,) the
      j-th centred feature of X. The weights come from the first argument: pwcca(x, y) ≠ pwcca(y, x).
[H36] Hotelling. "Relations between two sets of variates", Biometrika 1936: the canonical
      correlations are the singular values of Σxx^{-1/2} Σxy Σyy^{-1/2}.

Everything comes from the scatters S_xx = X̃ᵀX̃, S_yy, S_xy = X̃ᵀỸ (X̃ = X - mean): [R17]'s SVD step is
the eigendecomposition S_xx = V Λ Vᵀ (right singular vectors, squared singular values). With the
kept directions V_k, W = V_k (Λ_k + ε)^{-1/2} whitens X̃ (X̃W has identity Gram when ε = 0), and the
canonical correlations are the singular values of C = Wₓᵀ S_xy W_y; h_i = X̃Wₓu_i (u_i: left singular
vectors of C), so ⟨h_i, x_j⟩ = (S_xx Wₓ u_i)_j needs no N-sized vector.

Kept directions: eigenvalues ≤ 1e-10 · λ_max are null (float64 cannot resolve them from XᵀX) and
dropped; SVCCA then keeps the smallest k with Σ_{i≤k} λ_i ≥ variance · Σ_i λ_i.

Degenerate input: centred data span at most N - 1 dimensions, so when kx + ky > N - 1 the two kept
subspaces intersect and kx + ky - (N - 1) canonical correlations equal 1 whatever the data (CCA with
more features than items). Plain CCA (ridge 0) refuses; ridge ε = ridge · mean eigenvalue > 0
regularises instead (Σ + εI, scale-free, correlations then < 1).

Invariances: SVCCA — translation and any invertible linear map of the kept subspace (with
variance < 1 the kept subspace itself is invariant to orthogonal transforms and isotropic scaling);
PWCCA — the same for its second argument, but its weights sum |⟨h_i, x_j⟩| over the first argument's
own features, so there only translation, isotropic scaling, feature permutations and sign flips. Cost: O(N·(Dx² + Dy² + Dx·Dy) + Dx³ + Dy³) time,
O(Dx² + Dy² + Dx·Dy) memory.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import Tensor

from diffprobe.pipelines.cka.math import ArrayLike
from diffprobe.pipelines.similarity.math.checks import UndefinedSimilarityError, as_pair, check_items
from diffprobe.pipelines.similarity.math.moments import Moments, centred_cross, moments_of

log = logging.getLogger(__name__)

#: eigenvalues of XᵀX at or below this fraction of the largest are treated as null directions
NULL_TOL = 1e-10


@dataclass(frozen=True)
class Whitening:
    """The kept directions of one representation: X̃W are its whitened coordinates."""

    w: Tensor  # (D, k) V_k (Λ_k + ε)^{-1/2}
    g: Tensor  # (D, k) S W = V_k Λ_k (Λ_k + ε)^{-1/2}: features against whitened directions (PWCCA)
    rank: int  # non-null directions

    @property
    def kept(self) -> int:
        return int(self.w.shape[1])


def whitening(m: Moments, variance: float = 1.0, ridge: float = 0.0, name: str = "x") -> Whitening:
    """Kept directions of the scatter of ``m`` (D, D): null ones dropped, then the top ``variance`` share."""
    assert m.scatter is not None, "whitening needs the full scatter (moments with full=True)"
    lam, v = torch.linalg.eigh(m.scatter)
    lam, v = lam.flip(0), v.flip(1)
    top = float(lam[0])
    if not top > 0:
        raise UndefinedSimilarityError(f"{name} is constant across all {m.n} items: CCA is undefined; check the features")
    rank = int((lam > NULL_TOL * top).sum())
    total = lam.clamp(min=0).sum()
    kept = rank
    if variance < 1:
        share = lam[:rank].cumsum(0) / total
        kept = min(rank, int(torch.searchsorted(share, torch.tensor([variance], dtype=share.dtype, device=share.device))) + 1)
    eps = ridge * float(total) / m.dim
    lk, vk = lam[:kept], v[:, :kept]
    inv = (lk + eps).rsqrt()
    return Whitening(vk * inv, vk * (lk * inv), rank)


def check_dims(n: int, kx: int, ky: int, ridge: float) -> None:
    """Refuse plain CCA when the kept subspaces must intersect (kx + ky > N - 1); see module docstring."""
    if ridge == 0 and kx + ky > n - 1:
        raise UndefinedSimilarityError(
            f"CCA of {kx} + {ky} kept dimensions over {n} items is degenerate: centred data span at most N - 1 = "
            f"{n - 1} dimensions, so {kx + ky - (n - 1)} canonical correlation(s) would be 1 whatever the data; use more "
            "items, fewer features (a smaller pool), a smaller SVCCA variance fraction, or ridge > 0 (regularised CCA)"
        )
    if ridge == 0 and 10 * (kx + ky) > n:
        log.debug("CCA of %d + %d dimensions over only %d items: canonical correlations are biased upward", kx, ky, n)


def whitened_cross(wx: Whitening, wy: Whitening, cross: Tensor) -> Tensor:
    """C = Wₓᵀ S_xy W_y (kx, ky) from the centred cross scatter S_xy (Dx, Dy)."""
    return wx.w.T @ cross @ wy.w


def svcca_value(c: Tensor) -> float:
    """Mean canonical correlation: the mean singular value of the whitened cross scatter C (kx, ky)."""
    return float(torch.linalg.svdvals(c).mean())


def pwcca_value(wx: Whitening, c: Tensor) -> float:
    """Σ α_i ρ_i ([M18]) from x's whitening and C (kx, ky): ρ, u from the SVD of C, α̃_i = Σ_j |(G u_i)_j|."""
    u, rho, _ = torch.linalg.svd(c, full_matrices=False)
    alpha = (wx.g @ u).abs().sum(0)  # α̃_i = Σ_j |⟨h_i, x_j⟩|
    return float((alpha * rho).sum() / alpha.sum())


def whiten_pair(
    mx: Moments, my: Moments, variance: float, ridge: float, names: tuple[str, str] = ("x", "y")
) -> tuple[Whitening, Whitening]:
    """Both whitenings, after the checks: at least 2 items, not constant, not degenerate (check_dims)."""
    check_items(mx.n, 2, "CCA")
    wx, wy = whitening(mx, variance, ridge, names[0]), whitening(my, variance, ridge, names[1])
    check_dims(mx.n, wx.kept, wy.kept, ridge)
    return wx, wy


def svcca_from(mx: Moments, my: Moments, cross: Tensor, variance: float = 0.99, ridge: float = 0.0) -> float:
    """SVCCA ([R17]) from the moments of x and y and their centred cross scatter S_xy (Dx, Dy)."""
    wx, wy = whiten_pair(mx, my, variance, ridge)
    return svcca_value(whitened_cross(wx, wy, cross))


def pwcca_from(mx: Moments, my: Moments, cross: Tensor, ridge: float = 0.0, variance: float = 1.0) -> float:
    """PWCCA ([M18]) from the moments of x and y and S_xy (Dx, Dy); weights from x's features."""
    wx, wy = whiten_pair(mx, my, variance, ridge)
    return pwcca_value(wx, whitened_cross(wx, wy, cross))


def svcca(x: ArrayLike, y: ArrayLike, variance: float = 0.99, ridge: float = 0.0) -> float:
    """SVCCA ([R17]) of x (N, ...) and y (N, ...): mean canonical correlation of the top-variance
    subspaces, in [0, 1]; symmetric."""
    xt, yt = as_pair(x, y)
    return svcca_from(moments_of(xt), moments_of(yt), centred_cross(xt, yt), variance, ridge)


def pwcca(x: ArrayLike, y: ArrayLike, ridge: float = 0.0, variance: float = 1.0) -> float:
    """PWCCA ([M18]) of x (N, ...) and y (N, ...): canonical correlations weighted by how much of x's
    features each canonical variate accounts for, in [0, 1]; not symmetric."""
    xt, yt = as_pair(x, y)
    return pwcca_from(moments_of(xt), moments_of(yt), centred_cross(xt, yt), ridge, variance)
