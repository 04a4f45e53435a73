"""CKA matrices between lists of row sources: method choice, NaN-row exclusion, normalisation.

``cka_matrix(rows, cols, config)`` is the one entry point the store pipelines use; rows and cols
are :class:`~diffprobe.pipelines.cka.source.Source` lists over the same N items (cols=None: rows
against themselves). The HSIC of every needed pair comes from one of :data:`METHODS`:

  features   exact linear HSIC streamed in feature space (cka_stream), any N;
  gram       exact HSIC from in-memory N×N Grams (cka_batch), any kernel, small N;
  minibatch  unbiased HSIC summed over minibatches (cka_batch), any kernel, any N.

``method="auto"`` picks, for an exact estimator, whichever of features / gram fits max_memory at the
lower arithmetic cost (features ≈ N·Σ_pairs Da·Db, gram ≈ N²·(ΣD + L²)).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from diffprobe.device import resolve_device
from diffprobe.errors import ConfigError
from diffprobe.pipelines.cka.batch import hsic_gram, hsic_minibatch
from diffprobe.pipelines.cka.config import CKAConfig
from diffprobe.pipelines.cka.math import cka_from_hsic, get_estimator
from diffprobe.pipelines.cka.source import NonFiniteRows, Source, chunk_rows_for, finite_rows
from diffprobe.pipelines.cka.stream import Pair, hsic_features, plan_features
from diffprobe.registry import Registry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MatrixResult:
    """CKA values (rows × cols) with the facts of the run (method, passes, items, time)."""

    values: np.ndarray  # (L, M) float64
    row_labels: list[str]
    col_labels: list[str]
    n_items: int
    facts: dict[str, Any] = field(default_factory=dict)


Facts = dict[str, Any]
Method = Callable[[Sequence[Source], Sequence[Pair], CKAConfig, torch.device], tuple[torch.Tensor, Facts]]
METHODS: Registry[Method] = Registry("CKA method")
register_method = METHODS.register


def _dense(count: int, values: dict[Pair, float]) -> torch.Tensor:
    h = torch.full((count, count), float("nan"), dtype=torch.float64)
    for (a, b), v in values.items():
        h[a, b] = h[b, a] = v
    return h


@register_method("features")
def _features(sources: Sequence[Source], pairs: Sequence[Pair], cfg: CKAConfig, dev: torch.device) -> tuple[torch.Tensor, Facts]:
    if cfg.kernel != "linear":
        raise ConfigError(f"the feature-space method computes linear CKA only, got kernel {cfg.kernel!r}")
    vals, facts = hsic_features(sources, pairs, get_estimator(cfg.estimator), cfg.max_memory, dev, cfg.chunk_rows)
    return _dense(len(sources), vals), facts


@register_method("gram")
def _gram(sources: Sequence[Source], pairs: Sequence[Pair], cfg: CKAConfig, dev: torch.device) -> tuple[torch.Tensor, Facts]:
    return hsic_gram(sources, cfg.estimator, cfg.kernel, cfg.rbf_fraction, cfg.max_memory, dev)


@register_method("minibatch")
def _minibatch(sources: Sequence[Source], pairs: Sequence[Pair], cfg: CKAConfig, dev: torch.device) -> tuple[torch.Tensor, Facts]:
    return hsic_minibatch(sources, cfg.kernel, cfg.rbf_fraction, cfg.batch_size, cfg.seed, cfg.max_memory, dev, cfg.median_sample)


def choose_method(sources: Sequence[Source], pairs: Sequence[Pair], cfg: CKAConfig) -> str:
    """The method for ``cfg`` (see module docstring); raises ConfigError when no exact method fits."""
    if cfg.estimator == "minibatch":
        return "minibatch"
    if cfg.method != "auto":
        return cfg.method
    n, dims = sources[0].n, [s.dim for s in sources]
    gram_bytes = 8 * n * n * (len(sources) + 3) + 8 * n * max(dims)
    gram_cost = n * n * (sum(dims) + len(sources) ** 2)
    if cfg.kernel != "linear":
        return "gram"  # hsic_gram explains what to do when it does not fit
    try:
        plan_features(sources, pairs, cfg.max_memory, cfg.chunk_rows)
    except ConfigError:
        if gram_bytes <= cfg.max_memory:
            return "gram"
        raise
    feat_cost = n * sum(dims[a] * dims[b] for a, b in pairs)
    return "gram" if gram_bytes <= cfg.max_memory and gram_cost < feat_cost else "features"


def cka_matrix(rows: Sequence[Source], cols: Sequence[Source] | None, cfg: CKAConfig) -> MatrixResult:
    """CKA (len(rows), len(cols)) between sources over the same items; cols=None compares rows with rows.

    Items whose rows are NaN/inf in any source (failed extractions, partial imports) are excluded
    from every pair after a scan, so every cell is computed on the same items.
    """
    sources = list(rows) + list(cols or [])
    if not rows or (cols is not None and not cols):
        raise ConfigError("expected at least one array on each side of the CKA matrix, got none")
    n = sources[0].n
    if any(s.n != n for s in sources):
        raise ConfigError(f"expected every array to cover the same items, got {sorted({s.n for s in sources})}")
    la = len(rows)
    if cols is None:
        pairs = [(a, b) for a in range(la) for b in range(a, la)]
    else:
        pairs = [(a, a) for a in range(len(sources))] + [(a, la + b) for a in range(la) for b in range(len(cols))]
    dev = resolve_device(cfg.device)
    t0 = time.perf_counter()
    excluded = 0
    try:
        method = choose_method(sources, pairs, cfg)
        h, facts = METHODS[method](sources, pairs, cfg, dev)
    except NonFiniteRows as e:
        keep = finite_rows(sources, cfg.chunk_rows or chunk_rows_for(sources, cfg.max_memory // 2))
        excluded = int((~keep).sum())
        log.warning("%s has NaN/inf rows; excluding the %d of %d items that are not finite in every array", e.label, excluded, n)
        sources = [s.subset(keep) for s in sources]
        n = sources[0].n
        method = choose_method(sources, pairs, cfg)
        h, facts = METHODS[method](sources, pairs, cfg, dev)
    h = h.cpu()
    diag = torch.diagonal(h)
    labels = [s.label for s in sources]
    if cols is None:
        vals = cka_from_hsic(h, diag, diag, labels, labels)
    else:
        vals = cka_from_hsic(h[:la, la:], diag[:la], diag[la:], labels[:la], labels[la:])
    facts = {"method": method, "device": str(dev), "n_excluded": excluded, "seconds": round(time.perf_counter() - t0, 3), **facts}
    return MatrixResult(vals.numpy(), labels[:la], labels[la:] if cols is not None else labels, n, facts)
