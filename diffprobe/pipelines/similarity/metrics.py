"""The similarity metrics by name: one :class:`Metric` per metric in the :data:`METRICS` registry.

A metric has an in-memory form (``dense``: two arrays → a float, the reference) and a streamed form
over row sources (``streamed``: the values of many pairs of sources, reading each in chunks), or its
own matrix pipeline (``matrix``: ``cka`` delegates to :func:`~diffprobe.pipelines.cka.matrix.cka_matrix`
unchanged). Families register lazily, so listing the names imports no torch.

Adding a metric is one module defining a ``Metric`` plus one ``register_lazy`` line below.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from diffprobe.errors import ConfigError
from diffprobe.registry import Registry

if TYPE_CHECKING:
    import torch

    from diffprobe.pipelines.cka.matrix import MatrixResult
    from diffprobe.pipelines.cka.source import Source
    from diffprobe.pipelines.similarity.config import SimilarityConfig

Pair = tuple[int, int]
Facts = dict[str, Any]
DenseFn = Callable[[Any, Any, "SimilarityConfig"], float]
StreamFn = Callable[[Sequence["Source"], Sequence[Pair], "SimilarityConfig", "torch.device"], tuple[dict[Pair, float], Facts]]
MatrixFn = Callable[[Sequence["Source"], "Sequence[Source] | None", "SimilarityConfig"], "MatrixResult"]


@dataclass(frozen=True)
class Metric:
    """One similarity metric.

    Attributes:
        name: its registry name.
        dense: (x (N, ...), y (N, ...), config) → value, everything in memory (the reference).
        streamed: (sources, pairs, config, device) → ({pair: value}, facts) over row sources; None
            when the metric brings its own ``matrix``.
        symmetric: value(x, y) == value(y, x) (a symmetric matrix computes each pair once).
        distance: True when 0 means identical and larger means less alike (``procrustes``).
        matrix: (rows, cols, config) → MatrixResult, for a metric with its own matrix pipeline.
    """

    name: str
    dense: DenseFn
    streamed: StreamFn | None
    symmetric: bool
    distance: bool = False
    matrix: MatrixFn | None = None


METRICS: Registry[Metric] = Registry("similarity metric", error=ConfigError)
METRICS.register_lazy("cka", "diffprobe.pipelines.similarity.metrics:CKA")
METRICS.register_lazy("mutual-knn", "diffprobe.pipelines.similarity.knn_stream:MUTUAL_KNN")
METRICS.register_lazy("cknna", "diffprobe.pipelines.similarity.knn_stream:CKNNA")
METRICS.register_lazy("cycle-knn", "diffprobe.pipelines.similarity.knn_stream:CYCLE_KNN")
METRICS.register_lazy("svcca", "diffprobe.pipelines.similarity.cca_stream:SVCCA")
METRICS.register_lazy("pwcca", "diffprobe.pipelines.similarity.cca_stream:PWCCA")
METRICS.register_lazy("procrustes", "diffprobe.pipelines.similarity.cca_stream:PROCRUSTES")
METRICS.register_lazy("rsa", "diffprobe.pipelines.similarity.rsa_stream:RSA")


def get_metric(name: str) -> Metric:
    """The metric ``name``; an unknown name raises ConfigError listing the valid ones."""
    return METRICS.get(name)


def _cka_dense(x: Any, y: Any, cfg: SimilarityConfig) -> float:
    from diffprobe.pipelines.cka.math import cka, minibatch_cka

    c = cfg.cka_config()
    if c.estimator == "minibatch":
        return minibatch_cka(x, y, c.batch_size, c.kernel, rbf_fraction=c.rbf_fraction, seed=c.seed)
    return cka(x, y, c.kernel, c.estimator, rbf_fraction=c.rbf_fraction)


def _cka_matrix(rows: Sequence[Source], cols: Sequence[Source] | None, cfg: SimilarityConfig) -> MatrixResult:
    from diffprobe.pipelines.cka.matrix import cka_matrix

    res = cka_matrix(rows, cols, cfg.cka_config())
    return type(res)(res.values, res.row_labels, res.col_labels, res.n_items, {"metric": "cka", **res.facts})


#: linear (or RBF) CKA of Kornblith et al. 2019, computed by the CKA package as it stands
CKA = Metric("cka", dense=_cka_dense, streamed=None, symmetric=True, matrix=_cka_matrix)
