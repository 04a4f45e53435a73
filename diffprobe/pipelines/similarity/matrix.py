"""Similarity matrices between lists of row sources, for any registered metric.

``similarity_matrix(rows, cols, metric, config)`` is the analogue of
:func:`~diffprobe.pipelines.cka.matrix.cka_matrix` (and returns its
:class:`~diffprobe.pipelines.cka.matrix.MatrixResult`): rows and cols are
:class:`~diffprobe.pipelines.cka.source.Source` lists over the same N items (cols=None: rows against
themselves). Cell (a, b) is metric(rows[a], cols[b]); for an asymmetric metric (``pwcca``,
``cycle-knn``) the order matters and a square matrix computes both triangles.

``similarity(x, y, metric, config)`` is the in-memory form for two arrays.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import numpy as np

from diffprobe.device import resolve_device
from diffprobe.errors import ConfigError
from diffprobe.pipelines.cka.math import ArrayLike
from diffprobe.pipelines.cka.matrix import MatrixResult
from diffprobe.pipelines.cka.source import NonFiniteRows, Source, chunk_rows_for, finite_rows
from diffprobe.pipelines.similarity.config import SimilarityConfig
from diffprobe.pipelines.similarity.metrics import Metric, Pair, get_metric

log = logging.getLogger(__name__)


def matrix_pairs(rows: int, cols: int | None, symmetric: bool) -> list[Pair]:
    """Source index pairs to compute: cols=None → pairs within rows (a ≤ b when symmetric, all when not);
    else (a, rows + b) for every row a and column b."""
    if cols is None:
        return [(a, b) for a in range(rows) for b in range(rows) if b >= a or not symmetric]
    return [(a, rows + b) for a in range(rows) for b in range(cols)]


def similarity_matrix(
    rows: Sequence[Source], cols: Sequence[Source] | None, metric: str, cfg: SimilarityConfig | None = None
) -> MatrixResult:
    """``metric`` (len(rows), len(cols)) between sources over the same items; cols=None compares rows with rows.

    Items whose rows are NaN/inf in any source are excluded from every cell after a scan (as
    cka_matrix does), so every cell is computed on the same items; ``facts`` records how many.
    """
    cfg = cfg or SimilarityConfig()
    m: Metric = get_metric(metric)
    if not rows or (cols is not None and not cols):
        raise ConfigError("expected at least one array on each side of the similarity matrix, got none")
    if m.matrix is not None:
        return m.matrix(rows, cols, cfg)
    assert m.streamed is not None, f"metric {m.name} has neither a streamed form nor a matrix pipeline"
    sources = list(rows) + list(cols or [])
    n = sources[0].n
    if any(s.n != n for s in sources):
        raise ConfigError(f"expected every array to cover the same items, got {sorted({s.n for s in sources})}")
    la = len(rows)
    pairs = matrix_pairs(la, None if cols is None else len(cols), m.symmetric)
    dev = resolve_device(cfg.device)
    t0 = time.perf_counter()
    excluded = 0
    try:
        values, facts = m.streamed(sources, pairs, cfg, dev)
    except NonFiniteRows as e:
        keep = finite_rows(sources, cfg.chunk_rows or chunk_rows_for(sources, cfg.max_memory // 2))
        excluded = int((~keep).sum())
        log.warning("%s has NaN/inf rows; excluding the %d of %d items that are not finite in every array", e.label, excluded, n)
        sources = [s.subset(keep) for s in sources]
        n = sources[0].n
        values, facts = m.streamed(sources, pairs, cfg, dev)
    out = np.full((la, la if cols is None else len(cols)), np.nan)
    for (a, b), v in values.items():
        out[a, b - (0 if cols is None else la)] = v
        if cols is None and m.symmetric:
            out[b, a] = v
    labels = [s.label for s in sources]
    facts = {"metric": m.name, "device": str(dev), "n_excluded": excluded, "seconds": round(time.perf_counter() - t0, 3), **facts}
    return MatrixResult(out, labels[:la], labels[la:] if cols is not None else labels[:la], n, facts)


def similarity(x: ArrayLike, y: ArrayLike, metric: str, cfg: SimilarityConfig | None = None) -> float:
    """``metric`` between x (N, ...) and y (N, ...), all in memory (the reference each streamed form equals)."""
    return get_metric(metric).dense(x, y, cfg or SimilarityConfig())
