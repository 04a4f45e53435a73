"""The similarity math: k-NN alignment, CKNNA, SVCCA/PWCCA, Procrustes and RSA as pure float64
functions (no I/O, no stores), each module one metric family with its definition and citation.

The streamed pipeline (:mod:`diffprobe.pipelines.similarity`) computes the same intermediate
quantities (neighbour tables, moments, RDM triangles) over row chunks and finishes them with the
functions here, so in-memory and streamed values share one definition.
"""

from diffprobe.pipelines.similarity.math.cca import (
    NULL_TOL,
    Whitening,
    check_dims,
    pwcca,
    pwcca_from,
    pwcca_value,
    svcca,
    svcca_from,
    svcca_value,
    whiten_pair,
    whitened_cross,
    whitening,
)
from diffprobe.pipelines.similarity.math.checks import UndefinedSimilarityError, as_pair
from diffprobe.pipelines.similarity.math.cknna import cknna, cknna_tables
from diffprobe.pipelines.similarity.math.knn import (
    NEIGHBOURS,
    NeighbourRule,
    NeighbourTable,
    cycle_knn,
    cycle_knn_tables,
    members,
    mutual_knn,
    mutual_knn_tables,
    neighbour_table,
    top_k,
)
from diffprobe.pipelines.similarity.math.moments import Moments, centred_cross, moments_of
from diffprobe.pipelines.similarity.math.procrustes import procrustes, procrustes_from
from diffprobe.pipelines.similarity.math.rsa import (
    DISSIMILARITIES,
    Dissimilarity,
    doubled_ranks,
    pair_count,
    rsa,
    spearman_from_ranks,
    upper_triangle,
)

__all__ = [
    "DISSIMILARITIES", "NEIGHBOURS", "NULL_TOL", "Dissimilarity", "Moments", "NeighbourRule", "NeighbourTable",
    "UndefinedSimilarityError", "Whitening", "as_pair", "centred_cross", "check_dims", "cknna",
    "cknna_tables", "cycle_knn", "cycle_knn_tables", "doubled_ranks", "members", "moments_of", "mutual_knn",
    "mutual_knn_tables", "neighbour_table", "pair_count", "procrustes", "procrustes_from", "pwcca", "pwcca_from", "pwcca_value",
    "rsa", "spearman_from_ranks", "svcca", "svcca_from", "svcca_value", "top_k", "upper_triangle", "whiten_pair", "whitened_cross", "whitening",
]
