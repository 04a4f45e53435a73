"""HSIC from Gram matrices: exact in memory (small N, any kernel) and minibatch ([N21], any N).

Both stack the centred Grams of all L arrays as rows of U (L, n²) and get every pair's HSIC from one
product U Uᵀ, so the cost per batch is L Gram matrices plus L²·n². Arrays of equal width are stacked
and go through the kernel and the centring together (up to :data:`STACK` at a time), so the number
of operations per batch grows with L / STACK rather than L.

Memory:
  gram       ≈ 8·N²·(L + 2·STACK) bytes (L centred Grams + one stack's temporaries) + the rows read.
  minibatch  ≈ 8·b²·(L + 2·STACK) bytes for b = batch_size, plus the raw rows of one group of
             batches for all arrays; groups are sized to max_memory, and each array is read once
             per group (⌈N / group⌉ gathers over the store: one when everything fits).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from diffprobe.errors import ConfigError
from diffprobe.pipelines.cka.math import DegenerateInputError, get_estimator, get_kernel, minibatch_indices, rbf_sigma
from diffprobe.pipelines.cka.source import NonFiniteRows, Source
from diffprobe.progress import bar_disabled
from diffprobe.sizes import format_bytes

log = logging.getLogger(__name__)

#: arrays of one width whose Grams are computed and centred in one stacked operation
STACK = 8


def gram_bytes(n: int, count: int) -> int:
    """Approximate bytes of the stacked centred Grams of ``count`` arrays over n items, with temporaries."""
    return 8 * n * n * (count + 2 * min(STACK, count))


class StackedGrams:
    """Centred Grams of every source for one set of items, as the rows of U (L, n²).

    Args:
        center: cka_math.center_gram (biased) or u_center_gram (unbiased), applied to (g, n, n).
        rows_max: the largest n that :meth:`products` will see.
        check_constant: raise DegenerateInputError for a source whose rows are all equal.
    """

    def __init__(self, sources: Sequence[Source], kernel: str, center: Callable[[Tensor], Tensor], rows_max: int,
                 device: torch.device, check_constant: bool = False) -> None:  # fmt: skip
        self.sources, self.kernel, self.center, self.device = sources, get_kernel(kernel), center, device
        self.check_constant = check_constant
        by_width: dict[int, list[int]] = {}
        for i, s in enumerate(sources):
            by_width.setdefault(s.dim, []).append(i)
        self.stacks = [ids[j : j + STACK] for ids in by_width.values() for j in range(0, len(ids), STACK)]
        self.u = torch.empty(len(sources), rows_max * rows_max, dtype=torch.float64, device=device)
        self.sigma: Tensor | None = None

    def features(self, raws: Sequence[np.ndarray], ids: Sequence[int]) -> Tensor:
        """(g, n, D) float64 on the device for the sources ``ids``; NonFiniteRows names a source with NaN/inf."""
        x = torch.stack([torch.from_numpy(np.ascontiguousarray(raws[i])) for i in ids]).to(self.device, torch.float64)
        if not bool(torch.isfinite(x).all()):
            bad = next(i for j, i in enumerate(ids) if not bool(torch.isfinite(x[j]).all()))
            raise NonFiniteRows(self.sources[bad].label)
        if self.check_constant:
            const = (x == x[:, :1]).flatten(1).all(1)
            if bool(const.any()):
                label = self.sources[ids[int(torch.nonzero(const)[0, 0])]].label
                raise DegenerateInputError(f"{label} is constant across all {x.shape[1]} items: CKA is undefined")
        return x

    def set_sigma(self, raws: Sequence[np.ndarray], fraction: float) -> list[float]:
        """RBF bandwidth per source: fraction × median pairwise distance of the given rows."""
        sig = [rbf_sigma(self.features(raws, [i])[0], fraction) for i in range(len(self.sources))]
        self.sigma = torch.tensor(sig, dtype=torch.float64, device=self.device)
        return sig

    def products(self, raws: Sequence[np.ndarray]) -> Tensor:
        """U Uᵀ (L, L) for rows ``raws`` (one (n, D_k) array per source, the same n items)."""
        n = raws[0].shape[0]
        for ids in self.stacks:
            sig = self.sigma[ids] if self.sigma is not None else None
            k = self.kernel(self.features(raws, ids), sigma=sig)
            self.u[ids, : n * n] = self.center(k).reshape(len(ids), n * n)
        u = self.u[:, : n * n]
        return u @ u.T


def hsic_gram(
    sources: Sequence[Source], estimator: str, kernel: str, rbf_fraction: float, max_memory: int, device: torch.device
) -> tuple[Tensor, dict[str, object]]:
    """Exact HSIC matrix (L, L) of L sources (each (N, D_k)) from in-memory N×N Gram matrices.

    For the RBF kernel σ_k = rbf_fraction × median pairwise distance of all N items of source k.
    """
    n, count = sources[0].n, len(sources)
    est = get_estimator(estimator)
    est.check_n(n)
    rows_bytes = n * sum(s.dim * s.itemsize for s in sources) + 8 * n * min(STACK, count) * max(s.dim for s in sources)
    need = gram_bytes(n, count) + rows_bytes
    if need > max_memory:
        raise ConfigError(
            f"exact {kernel} CKA of {count} arrays over {n} items needs ~{format_bytes(need)} of N×N Gram matrices, "
            f"more than max_memory {format_bytes(max_memory)}; use --estimator minibatch"
            + (" or the linear kernel (streamed in feature space)" if kernel != "linear" else "")
            + ", or raise --max-memory"
        )
    grams = StackedGrams(sources, kernel, est.center, n, device, check_constant=True)
    raws = [s.take(np.arange(n)) for s in tqdm(sources, unit="array", desc="CKA (Gram): reading", disable=bar_disabled())]
    facts: dict[str, object] = {"passes": 1, "estimated_peak_bytes": need}
    if kernel == "rbf":
        facts["rbf_sigma"] = grams.set_sigma(raws, rbf_fraction)
    return grams.products(raws) / est.denominator(n), facts


def _groups(batches: list[np.ndarray], bytes_per_item: int, budget: int) -> list[list[np.ndarray]]:
    groups: list[list[np.ndarray]] = [[]]
    used = 0
    for b in batches:
        size = len(b) * bytes_per_item
        if groups[-1] and used + size > budget:
            groups.append([])
            used = 0
        groups[-1].append(b)
        used += size
    return groups


def hsic_minibatch(
    sources: Sequence[Source], kernel: str, rbf_fraction: float, batch_size: int, seed: int, max_memory: int,
    device: torch.device, median_sample: int = 2048,
) -> tuple[Tensor, dict[str, object]]:
    """Sum over minibatches of the unbiased HSIC matrix (L, L) ([N21] eq. 3, before normalising).

    Batches come from one seeded permutation of the N items (stores are often sorted by class, so
    consecutive rows would not be a fair sample). For the RBF kernel σ_k is fixed per source from
    the first ``median_sample`` permuted items, so every batch uses the same kernel.
    """
    n, count = sources[0].n, len(sources)
    batches = minibatch_indices(n, batch_size, seed)
    bmax = max(len(b) for b in batches)
    fixed = gram_bytes(bmax, count) + 8 * bmax * min(STACK, count) * max(s.dim for s in sources)
    per_item = sum(s.dim * s.itemsize for s in sources)
    if fixed + bmax * per_item > max_memory:
        raise ConfigError(
            f"minibatch CKA of {count} arrays with batches of up to {bmax} items needs ~{format_bytes(fixed + bmax * per_item)}, "
            f"more than max_memory {format_bytes(max_memory)}; lower --batch-size or raise --max-memory"
        )
    groups = _groups(batches, per_item, max_memory - fixed)
    grams = StackedGrams(sources, kernel, get_estimator("unbiased").center, bmax, device)
    peak = fixed + max(sum(len(b) for b in g) for g in groups) * per_item
    facts: dict[str, object] = {"passes": len(groups), "batches": len(batches), "estimated_peak_bytes": peak}
    h = torch.zeros(count, count, dtype=torch.float64, device=device)
    with tqdm(total=n, unit="item", desc="CKA (minibatch)", disable=bar_disabled()) as bar:
        for gi, group in enumerate(groups):
            raw = [s.take(np.concatenate(group)) for s in sources]
            if gi == 0 and kernel == "rbf":
                facts["rbf_sigma"] = grams.set_sigma([r[:median_sample] for r in raw], rbf_fraction)
            start = 0
            for b in group:
                nb = len(b)
                h += grams.products([r[start : start + nb] for r in raw]) / (nb * (nb - 3))
                start += nb
                bar.update(nb)
    diag = torch.diagonal(h)
    if not bool((diag > 0).all()):
        label = sources[int(torch.nonzero(diag <= 0)[0, 0])].label
        raise DegenerateInputError(f"{label} has zero self-HSIC over all minibatches (constant features?)")
    return h, facts
