"""Per-feature standardisation with statistics from the training rows only.

The moments are accumulated chunk by chunk in float64 (shifted by the first chunk's mean to avoid
cancellation), so a lazy array is never loaded whole; ``transform`` stays lazy for a lazy input.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from diffprobe.probes.arrays import is_in_memory, row_chunks


@dataclass
class Standardizer:
    """x ↦ (x − mean) / scale per column; ``mean`` and ``scale`` are (D,) float32."""

    mean: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, X: Any, chunk: int = 65536, eps: float = 1e-6) -> Standardizer:
        """Moments of X (N, D); columns with std < ``eps`` get scale 1 (constant features stay 0)."""
        shift = None
        n, s1, s2 = 0, 0.0, 0.0
        for _, rows in row_chunks(X, chunk):
            r = rows.astype(np.float64)
            if shift is None:
                shift = r.mean(axis=0)
            r -= shift
            n += r.shape[0]
            s1 = s1 + r.sum(axis=0)
            s2 = s2 + (r * r).sum(axis=0)
        if shift is None:
            raise ValueError("cannot standardise an empty array")
        m = s1 / n
        var = np.maximum(s2 / n - m * m, 0.0)
        std = np.sqrt(var)
        scale = np.where(std < eps, 1.0, std)
        return cls((shift + m).astype(np.float32), scale.astype(np.float32))

    def transform(self, X: Any) -> Any:
        """(N, D) → (N, D) float32; lazy in, lazy out."""
        if is_in_memory(X):
            out = np.asarray(X, dtype=np.float32) - self.mean
            out /= self.scale
            return out
        return (X.astype(np.float32) - self.mean) / self.scale
