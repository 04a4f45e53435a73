"""The CKA math: kernels, HSIC estimators and CKA, as pure float64 functions (no I/O, no stores).

Everything the streaming pipeline (:mod:`diffprobe.pipelines.cka`) computes is defined here, so the
in-memory reference (``cka(x, y)``) and the streamed matrices share one definition.
"""

from diffprobe.pipelines.cka.math.estimators import (
    ESTIMATORS,
    Estimator,
    PairMoments,
    center_gram,
    cka,
    cka_from_grams,
    cka_from_hsic,
    get_estimator,
    hsic,
    hsic_matrix,
    linear_cka_features,
    minibatch_cka,
    minibatch_indices,
    pair_moments,
    u_center_gram,
)
from diffprobe.pipelines.cka.math.kernels import (
    KERNELS,
    ArrayLike,
    DegenerateInputError,
    as_features,
    check_not_constant,
    get_kernel,
    gram,
    linear_gram,
    median_distance,
    rbf_gram,
    rbf_sigma,
    register_kernel,
    sq_distances,
)

__all__ = [
    "ESTIMATORS", "KERNELS", "ArrayLike", "DegenerateInputError", "Estimator", "PairMoments", "as_features",
    "center_gram", "check_not_constant", "cka", "cka_from_grams", "cka_from_hsic", "get_estimator", "get_kernel",
    "gram", "hsic", "hsic_matrix", "linear_cka_features", "linear_gram", "median_distance", "minibatch_cka",
    "minibatch_indices", "pair_moments", "rbf_gram", "rbf_sigma", "register_kernel", "sq_distances", "u_center_gram",
]
