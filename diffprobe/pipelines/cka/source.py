"""Feature arrays seen as (N, D) row sources: chunked reads with prefetch, and a finite-rows scan.

A :class:`Source` wraps any (N0, ...) array that supports row slicing and sorted integer indexing
(numpy, a memory map, a dask array from ``store.read(..., lazy=True)``) together with the rows to use,
in order — so the valid-item mask and the id alignment between two stores cost nothing until read.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from diffprobe.progress import bar_disabled

log = logging.getLogger(__name__)


class NonFiniteRows(Exception):
    """Internal signal: a selected row holds NaN/inf (the caller rescans and excludes such items)."""

    def __init__(self, label: str) -> None:
        super().__init__(label)
        self.label = label


@dataclass(frozen=True)
class Source:
    """Rows ``rows`` (N,) of ``array`` (N0, ...), in that order, flattened to (N, D) on read."""

    label: str
    array: Any
    rows: np.ndarray

    @classmethod
    def of(cls, label: str, array: Any, rows: np.ndarray | None = None) -> Source:
        r = np.arange(array.shape[0], dtype=np.int64) if rows is None else np.asarray(rows, dtype=np.int64)
        return cls(label, array, r)

    @property
    def n(self) -> int:
        return int(self.rows.shape[0])

    @property
    def dim(self) -> int:
        return int(np.prod(self.array.shape[1:], dtype=np.int64))

    @property
    def itemsize(self) -> int:
        return int(np.dtype(self.array.dtype).itemsize)

    @property
    def store_chunk(self) -> int | None:
        """Rows per storage chunk along N (dask or zarr chunking), if known."""
        chunks = getattr(self.array, "chunks", None)
        if not chunks:
            return None
        first = chunks[0]
        return int(first[0]) if isinstance(first, tuple) else int(first)

    def take(self, pos: np.ndarray) -> np.ndarray:
        """Rows ``self.rows[pos]`` as an (len(pos), D) array in the stored dtype, in the order given.

        Reads a contiguous span when the wanted rows are dense in it, else a sorted gather, so a
        dask/zarr array reads each storage chunk once per call.
        """
        rows = self.rows[pos]
        if rows.size == 0:
            return np.empty((0, self.dim), dtype=self.array.dtype)
        ascending = bool(np.all(rows[1:] > rows[:-1]))
        order = None if ascending else np.argsort(rows, kind="stable")
        srt = rows if order is None else rows[order]
        lo, hi = int(srt[0]), int(srt[-1]) + 1
        if hi - lo == srt.size:
            got = np.asarray(self.array[lo:hi])
        elif hi - lo <= 2 * srt.size:
            got = np.asarray(self.array[lo:hi])[srt - lo]
        else:
            got = np.asarray(self.array[srt])
        if order is not None:
            out = np.empty_like(got)
            out[order] = got
            got = out
        if not got.flags.writeable:  # a read-only memory map: torch wants writable memory to share
            got = np.array(got)
        return got.reshape(rows.size, -1)

    def subset(self, keep: np.ndarray) -> Source:
        return replace(self, rows=self.rows[keep])


def chunk_bounds(n: int, chunk_rows: int) -> list[tuple[int, int]]:
    return [(s, min(s + chunk_rows, n)) for s in range(0, n, max(1, chunk_rows))]


def iter_chunks(sources: Sequence[Source], bounds: Sequence[tuple[int, int]]) -> Iterator[tuple[int, int, list[np.ndarray]]]:
    """Yield (start, stop, [rows of each source]) per chunk, reading the next chunk in a background thread."""
    if not bounds:
        return

    def read(b: tuple[int, int]) -> list[np.ndarray]:
        pos = np.arange(b[0], b[1])
        return [s.take(pos) for s in sources]

    with ThreadPoolExecutor(max_workers=1) as pool:
        nxt = pool.submit(read, bounds[0])
        for i, b in enumerate(bounds):
            cur = nxt.result()
            if i + 1 < len(bounds):
                nxt = pool.submit(read, bounds[i + 1])
            yield b[0], b[1], cur


def finite_rows(sources: Sequence[Source], chunk_rows: int) -> np.ndarray:
    """(N,) bool: items whose rows are finite in every source (one full read of every source)."""
    n = sources[0].n
    keep = np.ones(n, dtype=bool)
    bounds = chunk_bounds(n, chunk_rows)
    with tqdm(total=n, unit="item", desc="scanning for NaN rows", disable=bar_disabled(), leave=False) as bar:
        for start, stop, xs in iter_chunks(sources, bounds):
            for x in xs:
                keep[start:stop] &= np.isfinite(x).all(axis=1)
            bar.update(stop - start)
    return keep


def chunk_rows_for(sources: Sequence[Source], budget: int, bytes_per_value: int = 32, floor: int = 64) -> int:
    """Rows per chunk so that ``bytes_per_value`` × rows × ΣD stays within ``budget``, aligned to storage chunks.

    32 bytes per value covers the raw read and its prefetched successor (≤ 8 bytes each) and two
    float64 copies on the device (the chunk and its elementwise square).
    """
    n = max(s.n for s in sources)
    width = max(1, sum(s.dim for s in sources))
    rows = max(min(floor, n), budget // (bytes_per_value * width))
    rows = min(rows, n) if n else 1
    align = sources[0].store_chunk
    if align and rows > align:
        rows -= rows % align
    return max(1, rows)
