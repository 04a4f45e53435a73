"""The CKA settings: one frozen dataclass, recorded in every output."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from diffprobe.errors import ConfigError

#: kernels by name (the registry is math.KERNELS; kept here too so the CLI needs no torch import)
KERNEL_NAMES = ("linear", "rbf")
#: how HSIC is estimated: exact biased / exact unbiased ([S12]) or summed over minibatches ([N21])
ESTIMATOR_NAMES = ("biased", "unbiased", "minibatch")
#: how an exact estimator is computed: chosen by cost and memory, or forced (see cka_matrix.METHODS)
METHOD_NAMES = ("auto", "features", "gram")
#: how the items of two stores are paired: by item id (any order), or by row position
PAIR_BY = ("id", "position")


@dataclass(frozen=True)
class CKAConfig:
    """How a CKA matrix is computed.

    Attributes:
        kernel: ``linear`` or ``rbf`` (see :data:`diffprobe.pipelines.cka.math.KERNELS`).
        estimator: ``biased`` (HSIC_0), ``unbiased`` (HSIC_1) or ``minibatch`` (HSIC_1 summed over
            minibatches of one seeded permutation).
        batch_size: minibatch size (≥ 4); only used by the minibatch estimator.
        rbf_fraction: RBF bandwidth σ as a fraction of the median pairwise distance.
        device: ``cpu``, ``cuda``, ``cuda:K`` or ``auto`` (see :func:`diffprobe.device.resolve_device`).
        max_memory: bytes the computation may hold (accumulators + chunk buffers; approximate).
        method: ``auto`` or force ``features`` (streamed feature-space moments, linear only) or
            ``gram`` (in-memory N×N Grams) for the exact estimators.
        chunk_rows: rows per streamed chunk; None derives it from max_memory.
        seed: seed of the minibatch permutation.
        median_sample: items used to estimate the RBF median distance for minibatch CKA.
        allow_incomplete: compare only the finished items of a store whose extraction is not done
            (by default such a store is an error; see :mod:`diffprobe.store.coverage`).
    """

    kernel: str = "linear"
    estimator: str = "biased"
    batch_size: int = 1024
    rbf_fraction: float = 1.0
    device: str = "cpu"
    max_memory: int = 2 * 2**30
    method: str = "auto"
    chunk_rows: int | None = None
    seed: int = 0
    median_sample: int = 2048
    allow_incomplete: bool = False

    def __post_init__(self) -> None:
        if self.kernel not in KERNEL_NAMES:
            raise ConfigError(f"expected a kernel, got {self.kernel!r}; valid: {', '.join(KERNEL_NAMES)}")
        if self.estimator not in ESTIMATOR_NAMES:
            raise ConfigError(f"expected an estimator, got {self.estimator!r}; valid: {', '.join(ESTIMATOR_NAMES)}")
        if self.method not in METHOD_NAMES:
            raise ConfigError(f"expected a method, got {self.method!r}; valid: {', '.join(METHOD_NAMES)}")
        if self.method == "features" and self.kernel != "linear":
            raise ConfigError(
                f"method 'features' computes linear CKA only, got kernel {self.kernel!r}; "
                "use method 'gram' or estimator 'minibatch'"
            )
        if self.batch_size < 4:
            raise ConfigError(f"expected batch_size ≥ 4 (unbiased HSIC needs 4 items per batch), got {self.batch_size}")
        if not self.rbf_fraction > 0:
            raise ConfigError(f"expected rbf_fraction > 0, got {self.rbf_fraction}")
        if self.max_memory < 2**20:
            raise ConfigError(f"expected max_memory ≥ 1 MiB, got {self.max_memory} bytes")
        if self.chunk_rows is not None and self.chunk_rows < 1:
            raise ConfigError(f"expected chunk_rows ≥ 1, got {self.chunk_rows}")
        if self.median_sample < 2:
            raise ConfigError(f"expected median_sample ≥ 2, got {self.median_sample}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
