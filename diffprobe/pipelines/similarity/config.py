"""The similarity settings: one frozen dataclass for every metric, recorded in every output.

Kept free of torch imports (like :mod:`diffprobe.pipelines.cka.config`) so that a command line can
build and validate it instantly; the registries that use the names live in ``math/``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from diffprobe.errors import ConfigError
from diffprobe.pipelines.cka.config import CKAConfig

#: how k-NN metrics rank neighbours (registry: math.knn.NEIGHBOURS)
NEIGHBOUR_NAMES = ("cosine", "euclidean")
#: how RSA measures the dissimilarity of two items (registry: math.rsa.DISSIMILARITIES)
RDM_NAMES = ("correlation", "euclidean")


@dataclass(frozen=True)
class SimilarityConfig:
    """How a similarity matrix is computed.

    Attributes:
        k: neighbours per item for ``mutual-knn``, ``cknna`` and ``cycle-knn`` (1 ≤ k ≤ N-1).
        neighbours: ``cosine`` (rows L2-normalised, rank by inner product: Huh et al.'s setting) or
            ``euclidean`` (raw rows, rank by distance).
        variance: fraction of the variance SVCCA keeps per representation (its SVD step), in (0, 1].
        ridge: CCA regularisation ε ≥ 0 for ``svcca``/``pwcca``, relative to the mean eigenvalue of
            each covariance (0 = plain CCA, which refuses more kept dimensions than items).
        rdm: RSA dissimilarity: ``correlation`` (1 - Pearson r between items) or ``euclidean``.
        rsa_sample: RSA on a seeded random subset of this many items (an estimate, recorded in the
            facts); None computes it exactly on every item when the memory allows.
        seed: seed of that subset.
        device: ``cpu``, ``cuda``, ``cuda:K`` or ``auto`` (see :func:`diffprobe.device.resolve_device`).
        max_memory: bytes a computation may hold (features, tiles, accumulators; approximate).
        chunk_rows: rows per streamed read; None derives it from max_memory.
        tile_rows: rows per (rows × N) tile of the k-NN and RSA passes; None derives it from max_memory.
        cka: the settings of the ``cka`` metric; None means ``CKAConfig`` with this device,
            max_memory and chunk_rows.
    """

    k: int = 10
    neighbours: str = "cosine"
    variance: float = 0.99
    ridge: float = 0.0
    rdm: str = "correlation"
    rsa_sample: int | None = None
    seed: int = 0
    device: str = "cpu"
    max_memory: int = 2 * 2**30
    chunk_rows: int | None = None
    tile_rows: int | None = None
    cka: CKAConfig | None = None

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ConfigError(f"expected k ≥ 1 neighbours, got {self.k}")
        if self.neighbours not in NEIGHBOUR_NAMES:
            raise ConfigError(f"expected a neighbour rule, got {self.neighbours!r}; valid: {', '.join(NEIGHBOUR_NAMES)}")
        if not 0 < self.variance <= 1:
            raise ConfigError(f"expected a variance fraction in (0, 1], got {self.variance}")
        if not self.ridge >= 0:
            raise ConfigError(f"expected ridge ≥ 0, got {self.ridge}")
        if self.rdm not in RDM_NAMES:
            raise ConfigError(f"expected an RDM dissimilarity, got {self.rdm!r}; valid: {', '.join(RDM_NAMES)}")
        if self.rsa_sample is not None and self.rsa_sample < 3:
            raise ConfigError(f"expected rsa_sample ≥ 3 items (or None for all), got {self.rsa_sample}")
        if self.max_memory < 2**20:
            raise ConfigError(f"expected max_memory ≥ 1 MiB, got {self.max_memory} bytes")
        for name in ("chunk_rows", "tile_rows"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"expected {name} ≥ 1, got {value}")

    def cka_config(self) -> CKAConfig:
        """The settings the ``cka`` metric runs with."""
        if self.cka is not None:
            return self.cka
        return CKAConfig(device=self.device, max_memory=self.max_memory, chunk_rows=self.chunk_rows)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
