"""Input checks shared by the similarity metrics, and the error they raise when a metric is undefined.

Inputs are (N, ...) arrays (numpy or torch); :func:`as_pair` flattens trailing axes and converts to
float64 through the CKA package's :func:`~diffprobe.pipelines.cka.math.as_features` (one definition
of "features"), which also rejects NaN/inf.
"""

from __future__ import annotations

import torch
from torch import Tensor

from diffprobe.errors import ConfigError
from diffprobe.pipelines.cka.math import ArrayLike, DegenerateInputError, as_features


class UndefinedSimilarityError(DegenerateInputError):
    """A similarity metric is undefined for this input (too few items, constant features, CCA with
    more kept dimensions than items, k ≥ N, …). Subclasses DegenerateInputError (and so
    DiffprobeError and ValueError): one ``except`` catches CKA's and these."""


def as_pair(x: ArrayLike, y: ArrayLike, device: torch.device | str | None = None) -> tuple[Tensor, Tensor]:
    """x (N, ...), y (N, ...) → float64 tensors (N, Dx), (N, Dy) on ``device``; N must agree."""
    xt, yt = as_features(x, device), as_features(y, device)
    if xt.shape[0] != yt.shape[0]:
        raise ConfigError(f"expected the same number of items in x and y, got {xt.shape[0]} and {yt.shape[0]}")
    return xt, yt


def check_items(n: int, need: int, metric: str) -> None:
    """Refuse fewer than ``need`` items."""
    if n < need:
        raise UndefinedSimilarityError(f"{metric} needs at least {need} items, got {n}; compare more items")


def check_not_constant(x: Tensor, name: str, metric: str) -> None:
    """Refuse x (N, D) whose rows are all the same: every item looks alike and the metric says nothing."""
    if x.shape[0] > 0 and bool((x == x[:1]).all()):
        raise UndefinedSimilarityError(
            f"{name} is constant across all {x.shape[0]} items: {metric} is undefined; check that the array holds "
            "features (a failed extraction or an all-zero block gives this)"
        )


def check_k(k: int, n: int) -> None:
    """k-NN metrics need 1 ≤ k ≤ N - 1 (an item is never its own neighbour)."""
    if not 1 <= k <= n - 1:
        raise UndefinedSimilarityError(
            f"expected 1 ≤ k ≤ N - 1 = {n - 1} neighbours (an item is not its own neighbour), got k = {k}; "
            "use a smaller k or more items"
        )
