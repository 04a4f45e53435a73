"""Orthogonal Procrustes distance, in float64.

[D21] Ding, Denain, Steinhardt. "Grounding Representation Similarity with Statistical Testing",
      NeurIPS 2021, §2: with X, Y centred and scaled to unit Frobenius norm,
      d_Proc(X, Y) = min_{R orthogonal} ‖X - YR‖²_F = ‖X‖²_F + ‖Y‖²_F - 2‖XᵀY‖_* = 2 - 2‖XᵀY‖_*
      (‖·‖_*: nuclear norm, the sum of singular values; Dx ≠ Dy is the same as zero-padding the
      narrower one, which [D21] does).

Only X̃ᵀỸ (Dx, Dy) and the two squared norms are needed, so the streamed pipeline sums them over row
chunks. A distance in [0, 2] (0: equal up to rotation, translation and scale); symmetric; invariant
to orthogonal transforms, isotropic scaling and translation of either input. Cost O(N·Dx·Dy +
Dx·Dy·min(Dx, Dy)) time, O(Dx·Dy) memory. Rounding can put identical inputs a hair below 0; the
value is clamped at 0.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from diffprobe.pipelines.cka.math import ArrayLike
from diffprobe.pipelines.similarity.math.checks import UndefinedSimilarityError, as_pair, check_items
from diffprobe.pipelines.similarity.math.moments import centred_cross


def procrustes_from(
    cross: Tensor, sumsq_x: float, sumsq_y: float, n: int, names: tuple[str, str] = ("x", "y")
) -> float:
    """d_Proc from the centred cross scatter X̃ᵀỸ (Dx, Dy) and ‖X̃‖²_F, ‖Ỹ‖²_F over n items."""
    check_items(n, 2, "Procrustes distance")
    for name, v in zip(names, (sumsq_x, sumsq_y)):
        if not v > 0:
            raise UndefinedSimilarityError(
                f"{name} is constant across all {n} items (zero norm after centring): the Procrustes distance is undefined"
            )
    nuclear = float(torch.linalg.svdvals(cross).sum()) / math.sqrt(sumsq_x * sumsq_y)
    return max(0.0, 2.0 - 2.0 * nuclear)


def procrustes(x: ArrayLike, y: ArrayLike) -> float:
    """Orthogonal Procrustes distance ([D21]) of x (N, ...) and y (N, ...), in [0, 2]."""
    xt, yt = as_pair(x, y)
    xc, yc = xt - xt.mean(0), yt - yt.mean(0)
    return procrustes_from(centred_cross(xt, yt), float((xc * xc).sum()), float((yc * yc).sum()), int(xt.shape[0]))
