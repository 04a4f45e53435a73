"""Batches of (feature maps, masks) streamed from a store — memory bounded by one batch, whatever the
number of items — or of raw pixels, the per-pixel baseline."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from diffprobe.errors import StoreKeyError
from diffprobe.extract.data import load_image
from diffprobe.probes.errors import ProbeError
from diffprobe.store.store import FeatureStore

#: the name that stands for raw pixels instead of stored arrays
PIXELS = "pixels"


@dataclass
class DenseSource:
    """The items of one split that have a valid image and a mask, and the arrays to read for them.

    Attributes:
        names: stored array names (N, C, h, w), or ``[PIXELS]`` for the images at the mask size.
        rows: the rows used (sorted).
    """

    store: FeatureStore
    split: str
    names: list[str]
    rows: np.ndarray
    _paths: np.ndarray | None = field(default=None, repr=False)
    _size: int | None = field(default=None, repr=False)

    @classmethod
    def of(cls, store: FeatureStore, split: str, names: list[str]) -> DenseSource:
        if not store.has_masks(split):
            raise StoreKeyError(f"split {split!r} of {store.path} has no masks: a dense probe needs data with masks "
                                "(a manifest 'mask' column, or images/ + masks/ folders) at extraction")  # fmt: skip
        for n in names:
            if n != PIXELS:
                shape = store.array_info(split, n)[0]
                if len(shape) != 4:
                    raise StoreKeyError(f"{n} holds {shape[1:]} per item; a dense probe reads (C, h, w) maps (extract with --pool full, "
                                        "or a pool > 1, and one draw or --reduce mean)")  # fmt: skip
        return cls(store, split, names, np.flatnonzero(store.valid(split)))

    @property
    def mask_size(self) -> int:
        if self._size is None:
            self._size = int(self.store.masks(self.split, slice(0, 1)).shape[-1])
        return self._size

    def channels(self) -> list[int]:
        return [3 if n == PIXELS else int(self.store.array_info(self.split, n)[0][1]) for n in self.names]

    def sizes(self) -> list[int]:
        return [self.mask_size if n == PIXELS else int(self.store.array_info(self.split, n)[0][-1]) for n in self.names]

    def _read(self, name: str, lo: int, hi: int, keep: np.ndarray) -> np.ndarray:
        """Rows ``keep`` (absolute, within [lo, hi)) of one array, as stored (float16 stays float16),
        read as the slice lo:hi."""
        if name == PIXELS:
            if self._paths is None:
                self._paths = self.store.paths(self.split)
            return np.stack([load_image(str(p), self.mask_size) for p in self._paths[keep]])
        block = np.asarray(self.store.read_array(self.split, name, items=slice(lo, hi)))
        return block if len(keep) == hi - lo else block[keep - lo]

    def row_bytes(self) -> int:
        """Bytes one item takes in a window (maps as stored, uint8 mask)."""
        size = [4 if n == PIXELS else self.store.array_info(self.split, n)[1].itemsize for n in self.names]
        return sum(b * c * z * z for b, c, z in zip(size, self.channels(), self.sizes())) + self.mask_size**2

    def batches(self, batch_size: int, rng: np.random.Generator | None = None,
                max_memory: int = 512 << 20) -> Iterator[tuple[list[Tensor], Tensor]]:  # fmt: skip
        """([(B, C_i, h_i, w_i) float32], (B, S, S) int64 masks), in windows (see :func:`windowed_batches`)."""

        def read(lo: int, hi: int, keep: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
            masks = self.store.masks(self.split, slice(lo, hi))
            return [self._read(n, lo, hi, keep) for n in self.names], masks if len(keep) == hi - lo else masks[keep - lo]

        return windowed_batches(read, self.rows, self.row_bytes(), batch_size, rng, max_memory)


def windowed_batches(read: Callable[[int, int, np.ndarray], tuple[list[np.ndarray], np.ndarray]], rows: np.ndarray, row_bytes: int,
                     batch_size: int, rng: np.random.Generator | None, max_memory: int) -> Iterator[tuple[list[Tensor], Tensor]]:  # fmt: skip
    """Batches of ``rows`` read in windows of consecutive rows that fit in ``max_memory``.

    ``read(lo, hi, keep)`` returns the maps (as stored) and the masks of rows ``keep`` ⊂ [lo, hi),
    each array read as one slice. With ``rng``, the windows come in random order and the rows of a
    window are shuffled before they are cut into batches — a full shuffle when all rows fit in one
    window, a windowed one (bounded memory, whatever the number of rows) when they do not. A batch is
    converted to float32 (maps) and int64 (masks) only when it is cut.
    """
    window = max(batch_size, (max_memory // max(1, row_bytes)) // batch_size * batch_size)
    starts = list(range(0, len(rows), window))
    if rng is not None:
        starts = [int(v) for v in rng.permutation(starts)]
    for s in starts:
        keep = rows[s : s + window]
        maps, masks = read(int(keep[0]), int(keep[-1]) + 1, keep)
        order = rng.permutation(len(keep)) if rng is not None else np.arange(len(keep))
        for b in range(0, len(keep), batch_size):
            idx = np.sort(order[b : b + batch_size])
            yield [torch.from_numpy(m[idx].astype(np.float32)) for m in maps], torch.from_numpy(masks[idx].astype(np.int64))
        del maps, masks


@dataclass
class ArraySource:
    """(N, C_i, h_i, w_i) arrays and (N, S, S) masks given directly: numpy, or anything sliceable
    along rows (dask, zarr, h5py), read a window at a time."""

    arrays: list[Any]
    masks: Any
    rows: np.ndarray

    @classmethod
    def of(cls, X: Any, y: Any) -> ArraySource:
        arrays = list(X) if isinstance(X, (list, tuple)) else [X]
        n = len(y)
        for a in arrays:
            if len(a.shape) != 4 or a.shape[0] != n:
                raise ProbeError(f"expected maps of shape (N={n}, C, h, w) for masks {tuple(y.shape)}, got {tuple(a.shape)}")
        if len(y.shape) != 3 or y.shape[1] != y.shape[2]:
            raise ProbeError(f"expected masks of shape (N, S, S), got {tuple(y.shape)}")
        return cls(arrays, y, np.arange(n))

    @property
    def mask_size(self) -> int:
        return int(self.masks.shape[-1])

    def channels(self) -> list[int]:
        return [int(a.shape[1]) for a in self.arrays]

    def sizes(self) -> list[int]:
        return [int(a.shape[-1]) for a in self.arrays]

    def batches(self, batch_size: int, rng: np.random.Generator | None = None,
                max_memory: int = 512 << 20) -> Iterator[tuple[list[Tensor], Tensor]]:  # fmt: skip
        def read(lo: int, hi: int, keep: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
            return [np.asarray(a[lo:hi]) for a in self.arrays], np.asarray(self.masks[lo:hi])

        row = sum(int(np.prod(a.shape[1:])) * np.dtype(a.dtype).itemsize for a in self.arrays) + self.mask_size**2
        return windowed_batches(read, self.rows, row, batch_size, rng, max_memory)


#: what a dense head trains on: maps and masks in windowed batches
Source = DenseSource | ArraySource
