"""Centred second moments of a representation: what the CCA family and Procrustes are computed from.

The in-memory functions build them from whole arrays here; the streamed pipeline
(:mod:`diffprobe.pipelines.similarity.moments`) sums the same quantities over row chunks and hands
the same dataclass to the same finishing functions, so both paths share one definition.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass(frozen=True)
class Moments:
    """Centred moments of X (N, D): the mean, the total squared norm and (optionally) the scatter."""

    n: int
    mean: Tensor  # (D,)   μ = 1/N Σ_i x_i
    sumsq: float  # tr S = Σ_i ‖x_i - μ‖² = ‖X̃‖²_F
    scatter: Tensor | None  # (D, D) S = X̃ᵀX̃ = Σ_i (x_i - μ)(x_i - μ)ᵀ, or None when not needed

    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])


def moments_of(x: Tensor, full: bool = True) -> Moments:
    """Moments of x (N, D) float64; ``full=False`` skips the (D, D) scatter."""
    xc = x - x.mean(0)
    return Moments(int(x.shape[0]), x.mean(0), float((xc * xc).sum()), xc.T @ xc if full else None)


def centred_cross(x: Tensor, y: Tensor) -> Tensor:
    """X̃ᵀỸ (Dx, Dy) of x (N, Dx), y (N, Dy), each centred by its own mean."""
    return (x - x.mean(0)).T @ (y - y.mean(0))
