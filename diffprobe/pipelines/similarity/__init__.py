"""Representation similarity beyond CKA: mutual k-NN, CKNNA, cycle k-NN, SVCCA, PWCCA, Procrustes
and RSA, beside the CKA package (which ``cka`` delegates to, unchanged).

``math/`` holds the pure float64 definitions (one module per family, each citing its paper);
``knn_stream``, ``moments``/``cca_stream`` and ``rsa_stream`` compute them over row sources
(:class:`~diffprobe.pipelines.cka.source.Source`) without N×N matrices beyond a tile; ``metrics``
registers them by name; ``matrix`` is the entry point :func:`similarity_matrix`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from diffprobe._lazy import lazy_exports

_EXPORTS: dict[str, str] = {
    "METRICS": "diffprobe.pipelines.similarity.metrics",
    "Metric": "diffprobe.pipelines.similarity.metrics",
    "get_metric": "diffprobe.pipelines.similarity.metrics",
    "SimilarityConfig": "diffprobe.pipelines.similarity.config",
    "similarity": "diffprobe.pipelines.similarity.matrix",
    "similarity_matrix": "diffprobe.pipelines.similarity.matrix",
}
__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, __all__)

if TYPE_CHECKING:
    from diffprobe.pipelines.similarity.config import SimilarityConfig
    from diffprobe.pipelines.similarity.matrix import similarity, similarity_matrix
    from diffprobe.pipelines.similarity.metrics import METRICS, Metric, get_metric
