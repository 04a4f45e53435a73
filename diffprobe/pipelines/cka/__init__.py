"""The CKA job: select arrays from feature stores, stream them as row sources, compute CKA matrices
and write them as CSV, JSON and a heatmap.

``math/`` holds the pure float64 math (kernels, HSIC estimators, CKA); ``source``, ``stream``,
``batch`` and ``matrix`` compute many HSIC pairs over row sources; ``analyses`` picks what to
compare in a store; ``outputs`` and ``plot`` write the results.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from diffprobe._lazy import lazy_exports

_EXPORTS: dict[str, str] = {
    "CKAConfig": "diffprobe.pipelines.cka.config",
    "CKAResult": "diffprobe.pipelines.cka.analyses",
    "cka_blocks": "diffprobe.pipelines.cka.analyses",
    "cka_timesteps": "diffprobe.pipelines.cka.analyses",
    "cka_stores": "diffprobe.pipelines.cka.analyses",
    "cka_matrix": "diffprobe.pipelines.cka.matrix",
    "write_outputs": "diffprobe.pipelines.cka.outputs",
}
__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, __all__)

if TYPE_CHECKING:
    from diffprobe.pipelines.cka.analyses import CKAResult, cka_blocks, cka_stores, cka_timesteps
    from diffprobe.pipelines.cka.config import CKAConfig
    from diffprobe.pipelines.cka.matrix import cka_matrix
    from diffprobe.pipelines.cka.outputs import write_outputs
