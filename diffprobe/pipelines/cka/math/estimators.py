"""HSIC estimators and CKA, in float64 (kernels: :mod:`~diffprobe.pipelines.cka.math.kernels`).

Pure math, no I/O. Inputs are arrays of shape (N, ...) (numpy or torch; trailing axes are flattened
to D features); every computation runs in torch float64 on the input tensor's device (CPU for
numpy input), so the same code serves the in-memory reference and the streaming pipeline.

Equations:
  [K19] Kornblith, Norouzi, Lee, Hinton. "Similarity of neural network representations revisited",
        ICML 2019. CKA(K, L) = HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L))   (eq. 3); linear CKA in
        feature space = ||YᵀX||²_F / (||XᵀX||_F ||YᵀY||_F) for centred X, Y   (eq. 4, 5).
  [S12] Song, Smola, Gretton, Bedo, Borgwardt. "Feature selection via dependence maximization",
        JMLR 2012. Biased HSIC_0 = tr(KHLH) / (n-1)²; unbiased
        HSIC_1 = [tr(K̃L̃) + 1ᵀK̃1·1ᵀL̃1 / ((n-1)(n-2)) - 2/(n-2)·1ᵀK̃L̃1] / (n(n-3))   (eq. 5),
        K̃ = K with its diagonal set to 0.
  [SR14] Székely, Rizzo. "Partial distance correlation", Ann. Stat. 2014: U-centring (eq. 3.1);
        ⟨Ũ(K), Ũ(L)⟩ / (n(n-3)) equals HSIC_1.
  [N21] Nguyen, Raghu, Kornblith. "Do wide and deep networks learn the same things?", ICLR 2021:
        minibatch CKA averages HSIC_1 over minibatches before normalising (eq. 2, 3).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from diffprobe.errors import ConfigError
from diffprobe.pipelines.cka.math.kernels import ArrayLike, DegenerateInputError, as_features, check_not_constant, get_kernel, rbf_sigma
from diffprobe.registry import Registry

# ---------------------------------------------------------------------------------------------
# Centring and HSIC estimators (registry).


def center_gram(k: Tensor) -> Tensor:
    """Double centring HKH (..., N, N), H = I - 11ᵀ/n ([S12] biased HSIC)."""
    k = k - k.mean(-2, keepdim=True)
    return k - k.mean(-1, keepdim=True)


def u_center_gram(k: Tensor) -> Tensor:
    """U-centring ([SR14] eq. 3.1) of K̃ = K with zero diagonal, for symmetric K (..., N, N).

    Ũ_ij = K̃_ij - r_i/(n-2) - r_j/(n-2) + s/((n-1)(n-2)) for i ≠ j, Ũ_ii = 0, where r = K̃1 and s = 1ᵀK̃1.
    """
    n = k.shape[-1]
    if n < 4:
        raise DegenerateInputError(f"the unbiased HSIC estimator needs at least 4 items, got {n}")
    k = k.clone()
    k.diagonal(dim1=-2, dim2=-1).zero_()
    r = k.sum(-1) / (n - 2)
    r -= r.sum(-1, keepdim=True) / (2 * (n - 1))
    k -= r[..., :, None]
    k -= r[..., None, :]
    k.diagonal(dim1=-2, dim2=-1).zero_()
    return k


@dataclass(frozen=True)
class PairMoments:
    """Sufficient statistics of two feature sets x (n, Dx), y (n, Dy) for linear HSIC in feature space.

    Any constant shift of x or y may be applied before accumulating: both estimators are
    translation invariant, and shifting by a mean keeps the float64 sums well conditioned.
    """

    n: int
    cross: Tensor  # (Dx, Dy)  Σ_i x_i y_iᵀ = XᵀY
    sum_x: Tensor  # (Dx,)     Σ_i x_i
    sum_y: Tensor  # (Dy,)     Σ_i y_i
    sqn_x: float  # Σ_i ||x_i||²
    sqn_y: float  # Σ_i ||y_i||²
    sqn_xy: float  # Σ_i ||x_i||² ||y_i||²
    x_by_sqn_y: Tensor  # (Dx,)  Σ_i ||y_i||² x_i
    y_by_sqn_x: Tensor  # (Dy,)  Σ_i ||x_i||² y_i


def pair_moments(x: Tensor, y: Tensor) -> PairMoments:
    """Moments of x (n, Dx), y (n, Dy) in one go (the streaming code sums the same terms per chunk)."""
    kx, ky = (x * x).sum(1), (y * y).sum(1)
    return PairMoments(
        n=x.shape[0], cross=x.T @ y, sum_x=x.sum(0), sum_y=y.sum(0), sqn_x=float(kx.sum()), sqn_y=float(ky.sum()),
        sqn_xy=float(kx @ ky), x_by_sqn_y=x.T @ ky, y_by_sqn_x=y.T @ kx,
    )


def _hsic0_moments(m: PairMoments) -> float:
    """Biased linear HSIC_0 = ||X_cᵀ Y_c||²_F / (n-1)² with X_cᵀY_c = XᵀY - s_x s_yᵀ / n ([K19] eq. 4)."""
    c = m.cross - torch.outer(m.sum_x, m.sum_y) / m.n
    return float((c * c).sum()) / (m.n - 1) ** 2


def _hsic1_moments(m: PairMoments) -> float:
    """Unbiased linear HSIC_1 ([S12] eq. 5) with K = XXᵀ, L = YYᵀ written in feature space:

    tr(K̃L̃) = ||XᵀY||² - Σk_i l_i;  1ᵀK̃1 = ||s_x||² - Σk_i;
    1ᵀK̃L̃1 = s_xᵀ XᵀY s_y - (Σ k_i y_i)·s_y - (Σ l_i x_i)·s_x + Σ k_i l_i,  k_i = ||x_i||², l_i = ||y_i||².
    """
    n = m.n
    tr = float((m.cross * m.cross).sum()) - m.sqn_xy
    ok = float(m.sum_x @ m.sum_x) - m.sqn_x
    ol = float(m.sum_y @ m.sum_y) - m.sqn_y
    okl = float(m.sum_x @ m.cross @ m.sum_y) - float(m.y_by_sqn_x @ m.sum_y) - float(m.x_by_sqn_y @ m.sum_x) + m.sqn_xy
    return (tr + ok * ol / ((n - 1) * (n - 2)) - 2.0 * okl / (n - 2)) / (n * (n - 3))


@dataclass(frozen=True)
class Estimator:
    """An HSIC estimator: Gram centring, its normaliser, the least n, and the feature-space form."""

    name: str
    center: Callable[[Tensor], Tensor]
    denominator: Callable[[int], float]
    min_n: int
    from_moments: Callable[[PairMoments], float]

    def check_n(self, n: int) -> None:
        if n < self.min_n:
            raise DegenerateInputError(f"the {self.name} HSIC estimator needs at least {self.min_n} items, got {n}")


ESTIMATORS: Registry[Estimator] = Registry("HSIC estimator")
ESTIMATORS.register("biased", Estimator("biased", center_gram, lambda n: float((n - 1) ** 2), 2, _hsic0_moments))
ESTIMATORS.register("unbiased", Estimator("unbiased", u_center_gram, lambda n: float(n * (n - 3)), 4, _hsic1_moments))
get_estimator = ESTIMATORS.get


def hsic(k: ArrayLike, l: ArrayLike, estimator: str = "biased") -> float:
    """HSIC of two Gram matrices K, L (N, N): ⟨C(K), C(L)⟩_F / d(n) ([S12]; C, d per estimator)."""
    est = get_estimator(estimator)
    kt, lt = _as_gram(k), _as_gram(l)
    _check_grams(kt, lt)
    est.check_n(kt.shape[0])
    return float((est.center(kt) * est.center(lt)).sum()) / est.denominator(kt.shape[0])


def _as_gram(k: ArrayLike) -> Tensor:
    return (k if isinstance(k, Tensor) else torch.from_numpy(np.asarray(k))).to(torch.float64)


def _check_grams(*grams: Tensor) -> None:
    n = grams[0].shape[0]
    for g in grams:
        if g.dim() != 2 or g.shape != (n, n):
            raise ConfigError(f"expected square Gram matrices of one size ({n}, {n}), got {tuple(g.shape)}")


def hsic_matrix(grams: Sequence[Tensor], estimator: str = "biased") -> Tensor:
    """All pairwise HSIC values (L, L) of L Gram matrices (N, N): one product of the stacked centred Grams."""
    est = get_estimator(estimator)
    _check_grams(*grams)
    est.check_n(grams[0].shape[0])
    u = torch.stack([est.center(g).reshape(-1) for g in grams])
    return (u @ u.T) / est.denominator(grams[0].shape[0])


def cka_from_hsic(
    cross: Tensor, diag_a: Tensor, diag_b: Tensor, names_a: Sequence[str] = (), names_b: Sequence[str] = ()
) -> Tensor:
    """CKA (L, M) = cross_ab / sqrt(diag_a[a] diag_b[b]) ([K19] eq. 3) from HSIC values; checks self-HSIC > 0."""
    for diag, names in ((diag_a, names_a), (diag_b, names_b)):
        bad = [i for i, v in enumerate(diag.tolist()) if not v > 0]
        if bad:
            who = names[bad[0]] if names else f"input {bad[0]}"
            raise DegenerateInputError(
                f"{who} has self-HSIC {diag[bad[0]].item():.3g} ≤ 0 (constant features, or too few items for the "
                "unbiased estimator): CKA is undefined"
            )
    return cross / torch.sqrt(diag_a[:, None] * diag_b[None, :])


def cka_from_grams(k: ArrayLike, l: ArrayLike, estimator: str = "biased") -> float:
    """CKA of two Gram matrices K, L (N, N) ([K19] eq. 3)."""
    kt, lt = _as_gram(k), _as_gram(l)
    for name, g in (("K", kt), ("L", lt)):
        if g.numel() and bool((g == g.reshape(-1)[0]).all()):
            raise DegenerateInputError(f"Gram matrix {name} is constant (constant features): CKA is undefined")
    h = hsic_matrix([kt, lt], estimator)
    return float(cka_from_hsic(h[:1, 1:], h[:1, 0], h[1:, 1], ("K",), ("L",))[0, 0])


def cka(x: ArrayLike, y: ArrayLike, kernel: str = "linear", estimator: str = "biased", *, rbf_fraction: float = 1.0) -> float:
    """CKA between features x (N, ...) and y (N, ...) in Gram form ([K19] eq. 3 with [S12] HSIC)."""
    xt, yt = as_features(x), as_features(y)
    if xt.shape[0] != yt.shape[0]:
        raise ConfigError(f"expected the same number of items in x and y, got {xt.shape[0]} and {yt.shape[0]}")
    check_not_constant(xt, "x")
    check_not_constant(yt, "y")
    fn = get_kernel(kernel)
    return cka_from_grams(fn(xt, fraction=rbf_fraction), fn(yt, fraction=rbf_fraction), estimator)


def linear_cka_features(x: ArrayLike, y: ArrayLike, estimator: str = "biased") -> float:
    """Linear CKA in feature space, never forming an N×N matrix ([K19] eq. 5; [S12] eq. 5 via moments).

    x: (N, ...), y: (N, ...). Cost O(N·Dx·Dy), memory O(Dx·Dy + Dx² + Dy²).
    """
    est = get_estimator(estimator)
    xt, yt = as_features(x), as_features(y)
    if xt.shape[0] != yt.shape[0]:
        raise ConfigError(f"expected the same number of items in x and y, got {xt.shape[0]} and {yt.shape[0]}")
    est.check_n(xt.shape[0])
    check_not_constant(xt, "x")
    check_not_constant(yt, "y")
    xt, yt = xt - xt.mean(0), yt - yt.mean(0)
    h = torch.tensor([est.from_moments(pair_moments(a, b)) for a, b in ((xt, yt), (xt, xt), (yt, yt))], dtype=torch.float64)
    return float(cka_from_hsic(h[:1, None], h[1:2], h[2:], ("x",), ("y",))[0, 0])


def minibatch_cka(
    x: ArrayLike, y: ArrayLike, batch_size: int, kernel: str = "linear", *, rbf_fraction: float = 1.0, seed: int = 0
) -> float:
    """Minibatch CKA ([N21] eq. 3): HSIC_1 summed over the minibatches of one seeded permutation, then normalised.

    x, y: (N, ...). The N items are split into ⌈N / batch_size⌉ near-equal batches (see
    :func:`minibatch_indices`). For the RBF kernel σ is fixed from the whole of x (resp. y).
    """
    xt, yt = as_features(x), as_features(y)
    n = xt.shape[0]
    if yt.shape[0] != n:
        raise ConfigError(f"expected the same number of items in x and y, got {n} and {yt.shape[0]}")
    batches = minibatch_indices(n, batch_size, seed)
    fn = get_kernel(kernel)
    sig = [rbf_sigma(t, rbf_fraction) if kernel == "rbf" else None for t in (xt, yt)]
    h = torch.zeros(2, 2, dtype=torch.float64)
    for idx in batches:
        t_idx = torch.from_numpy(idx)
        h += hsic_matrix([fn(xt[t_idx], sigma=sig[0]), fn(yt[t_idx], sigma=sig[1])], "unbiased")
    return float(cka_from_hsic(h[:1, 1:], h[:1, 0], h[1:, 1], ("x",), ("y",))[0, 0])


def minibatch_indices(n: int, batch_size: int, seed: int = 0) -> list[np.ndarray]:
    """A seeded permutation of range(n) cut into ⌈n / batch_size⌉ near-equal batches of ≤ batch_size items.

    Every batch keeps at least 4 items (the unbiased estimator's minimum), so tiny n gives fewer batches.
    """
    if batch_size < 4:
        raise ConfigError(f"expected a minibatch size ≥ 4 (unbiased HSIC needs 4 items), got {batch_size}")
    if n < 4:
        raise DegenerateInputError(f"minibatch CKA needs at least 4 items, got {n}")
    perm = np.random.default_rng(seed).permutation(n)
    return np.array_split(perm, max(1, min(math.ceil(n / batch_size), n // 4)))
