"""Per-feature standardisation with statistics from the training rows only.

The moments are accumulated chunk by chunk in float64 (shifted by the first chunk's mean to avoid
cancellation), so a lazy array is never loaded whole; ``transform`` stays lazy for a lazy input.
Rows may be (N, D) or (N, C, H, W): the statistics are per flattened feature, (D,) with D = C·H·W,
and ``transform`` returns the shape it was given.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from diffprobe.probes.arrays import as_numpy, is_in_memory, row_chunks

#: Float64 bytes :meth:`Standardizer.fit` works on at a time.
CHUNK_BYTES = 256 * 2**20


@dataclass
class Standardizer:
    """x ↦ (x − mean) / scale per feature; ``mean`` and ``scale`` are (D,) float32."""

    mean: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, X: Any, chunk: int = 65536, eps: float = 1e-6, chunk_bytes: int = CHUNK_BYTES) -> Standardizer:
        """Moments of X (N, D) or (N, ...); features with std < ``eps`` get scale 1 (constant ones stay 0).

        Reads at most ``chunk`` rows and ``chunk_bytes`` of float64 at a time: wide rows (a 16×16
        map of 1,024 channels is 2 MB in float64) take fewer rows per chunk, so memory stays bounded.
        """
        d = max(1, int(np.prod(X.shape[1:])))
        rows_per_chunk = max(1, min(chunk, chunk_bytes // (8 * d)))
        shift = None
        n, s1, s2 = 0, 0.0, 0.0
        for _, rows in row_chunks(X, rows_per_chunk):
            r = rows.reshape(rows.shape[0], -1).astype(np.float64)
            del rows
            if shift is None:
                shift = r.mean(axis=0)
            r -= shift
            n += r.shape[0]
            s1 = s1 + r.sum(axis=0)
            np.multiply(r, r, out=r)  # squares in place: no second chunk-sized copy
            s2 = s2 + r.sum(axis=0)
        if shift is None:
            raise ValueError("cannot standardise an empty array")
        m = s1 / n
        var = np.maximum(s2 / n - m * m, 0.0)
        std = np.sqrt(var)
        scale = np.where(std < eps, 1.0, std)
        return cls((shift + m).astype(np.float32), scale.astype(np.float32))

    def transform(self, X: Any) -> Any:
        """(N, D) → (N, D) float32, (N, ...) → (N, ...); numpy or torch in, numpy out; lazy in, lazy out."""
        shape = tuple(X.shape)
        flat = X if len(shape) == 2 else X.reshape(shape[0], -1)
        if is_in_memory(flat):
            out = as_numpy(flat) - self.mean
            out /= self.scale
        else:
            out = (flat.astype(np.float32) - self.mean) / self.scale
        return out if len(shape) == 2 else out.reshape(shape)
