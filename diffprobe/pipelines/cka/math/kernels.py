"""Feature matrices and kernels for CKA, in float64: the Gram matrices that HSIC compares.

Inputs are (N, ...) arrays (numpy or torch); trailing axes are flattened to D features and every
computation runs in torch float64 on the input tensor's device (CPU for numpy input).

RBF bandwidth: σ = fraction × median pairwise Euclidean distance over the pairs i < j, as in
Kornblith et al., "Similarity of neural network representations revisited", ICML 2019, §6.1.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from diffprobe.errors import ConfigError, DiffprobeError
from diffprobe.registry import Registry


class DegenerateInputError(DiffprobeError, ValueError):
    """CKA is undefined for this input (constant features, zero bandwidth, too few items)."""


ArrayLike = Any  # numpy array, torch tensor or anything np.asarray accepts


def as_features(x: ArrayLike, device: torch.device | str | None = None) -> Tensor:
    """(N, ...) array → (N, D) float64 tensor (trailing axes flattened). Rejects non-finite values."""
    t = x if isinstance(x, Tensor) else torch.from_numpy(np.ascontiguousarray(np.asarray(x)))
    t = t.to(device=device if device is not None else t.device, dtype=torch.float64)
    if t.dim() == 0:
        raise ConfigError("expected an (N, ...) array of features, got a scalar")
    t = t.reshape(t.shape[0], -1) if t.dim() != 1 else t.reshape(-1, 1)
    if not bool(torch.isfinite(t).all()):
        raise DegenerateInputError(f"features contain NaN or inf ({int((~torch.isfinite(t)).any(1).sum())} rows)")
    return t


def check_not_constant(x: Tensor, name: str = "features") -> None:
    """Raise :class:`DegenerateInputError` when every row of x (N, D) is the same."""
    if x.shape[0] > 0 and bool((x == x[:1]).all()):
        raise DegenerateInputError(f"{name} are constant across all {x.shape[0]} items: CKA is undefined")


# ---------------------------------------------------------------------------------------------
# Kernels (registry). Each maps X (N, D) float64 → Gram K (N, N).

KernelFn = Callable[..., Tensor]
KERNELS: Registry[KernelFn] = Registry("kernel", sort=True)
register_kernel = KERNELS.register
get_kernel = KERNELS.get


def sq_distances(x: Tensor) -> Tensor:
    """Pairwise squared Euclidean distances (..., N, N) of x (..., N, D), clamped at 0 against rounding."""
    sq = (x * x).sum(-1)
    d = sq[..., :, None] + sq[..., None, :] - 2.0 * (x @ x.mT)
    d.diagonal(dim1=-2, dim2=-1).zero_()
    return d.clamp_(min=0.0)


def median_distance(x: Tensor) -> float:
    """Median Euclidean distance over the N(N-1)/2 pairs i < j of x (N, D) (the RBF bandwidth scale)."""
    n = x.shape[0]
    if n < 2:
        raise DegenerateInputError(f"the median pairwise distance needs at least 2 items, got {n}")
    iu = torch.triu_indices(n, n, offset=1, device=x.device)
    d = sq_distances(x)[iu[0], iu[1]].sort().values.sqrt()
    m = d.numel()
    return float(d[m // 2] if m % 2 else 0.5 * (d[m // 2 - 1] + d[m // 2]))


def rbf_sigma(x: Tensor, fraction: float) -> float:
    """Bandwidth σ = fraction × median pairwise distance of x (N, D) ([K19] §6.1)."""
    if not fraction > 0:
        raise ConfigError(f"expected rbf fraction > 0, got {fraction}")
    sigma = fraction * median_distance(x)
    if sigma <= 0.0:
        raise DegenerateInputError("the median pairwise distance is 0 (mostly identical items): the RBF bandwidth is undefined")
    return sigma


@register_kernel("linear")
def linear_gram(x: Tensor, *, sigma: float | Tensor | None = None, fraction: float = 1.0) -> Tensor:
    """Linear kernel K = X Xᵀ (..., N, N) of x (..., N, D); sigma and fraction are ignored."""
    return x @ x.mT


@register_kernel("rbf")
def rbf_gram(x: Tensor, *, sigma: float | Tensor | None = None, fraction: float = 1.0) -> Tensor:
    """RBF kernel K_ij = exp(-||x_i - x_j||² / (2σ²)) (..., N, N) of x (..., N, D).

    sigma: a float, or one per leading index (...,); None (2-D x only) takes fraction × median distance.
    """
    if sigma is None:
        if x.dim() != 2:
            raise ConfigError(f"expected one bandwidth per matrix for batched RBF Grams, got none for shape {tuple(x.shape)}")
        sigma = rbf_sigma(x, fraction)
    s = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
    if not bool((s > 0).all()):
        raise ConfigError(f"expected RBF bandwidths > 0, got {s.tolist()}")
    return torch.exp(sq_distances(x) / (-2.0 * s * s)[..., None, None])


def gram(x: ArrayLike, kernel: str = "linear", *, sigma: float | None = None, rbf_fraction: float = 1.0) -> Tensor:
    """Gram matrix (N, N) float64 of features x (N, ...) under ``kernel`` (see :data:`KERNELS`)."""
    return get_kernel(kernel)(as_features(x), sigma=sigma, fraction=rbf_fraction)
