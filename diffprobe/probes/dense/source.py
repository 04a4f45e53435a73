"""Batches of (feature maps, masks) streamed from a store — memory bounded by one batch, whatever the
number of items — or of raw pixels, the per-pixel baseline.

A store extracted with V > 1 views holds maps (N, V, C, h, w) and masks (N, V, S, S), each view's mask
through that view's crop and flip. Training reads every view of an item as a sample with its own mask
(``every_view``); evaluation reads view 0 — the evaluation transform — with view 0's mask.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from diffprobe.errors import StoreKeyError
from diffprobe.extract.sources.decode import decode_image, load_image
from diffprobe.extract.views import ViewSpec
from diffprobe.probes.errors import ProbeError
from diffprobe.store.coverage import Coverage, require_complete
from diffprobe.store.store import FeatureStore

#: the name that stands for raw pixels instead of stored arrays
PIXELS = "pixels"


@dataclass
class DenseSource:
    """The items of one split that have a valid image and a mask, and the arrays to read for them.

    Attributes:
        names: stored array names (N, [V,] C, h, w), or ``[PIXELS]`` for the images at the mask size
            (with every view: each view re-made from the store's recorded view parameters).
        rows: the items used (sorted).
        every_view: with a store of V > 1 views, yield every view of an item (V samples, for
            training); else view 0 only (evaluation).
    """

    store: FeatureStore
    split: str
    names: list[str]
    rows: np.ndarray
    every_view: bool = False
    coverage: Coverage | None = None
    _paths: np.ndarray | None = field(default=None, repr=False)
    _size: int | None = field(default=None, repr=False)

    @classmethod
    def of(cls, store: FeatureStore, split: str, names: list[str], *, every_view: bool = False, rows: np.ndarray | None = None,
           allow_incomplete: bool = False) -> DenseSource:  # fmt: skip
        """The valid items of ``split`` (or those of ``rows``) for the arrays ``names``, checked
        against their recorded layouts: maps (C, h, w) per view, one draw, and masks per view; and
        against the done units (:func:`~diffprobe.store.coverage.require_complete`)."""
        if not store.has_masks(split):
            raise StoreKeyError(f"split {split!r} of {store.path} has no masks: a dense probe needs data with masks "
                                "(a manifest 'mask' column, or images/ + masks/ folders) at extraction")  # fmt: skip
        views = store.views
        for n in names:
            if n != PIXELS:
                lay = store.layout(split, n)
                if lay.draws or lay.flat or lay.n_views != views:
                    raise StoreKeyError(f"{n} holds {lay.axes_text()} per item; a dense probe reads (C, h, w) maps{' per view' if views > 1 else ''} "
                                        "(extract with --pool full, or a pool > 1, and one draw or --reduce mean)")  # fmt: skip
        masks = store.masks(split, slice(0, 1)).shape
        if views > 1 and (len(masks) != 4 or masks[1] != views):
            raise StoreKeyError(f"split {split!r} has {views} views but masks of shape {masks[1:]} per item; expected (V={views}, S, S), "
                                "one per view (re-extract the split with its masks)")  # fmt: skip
        cov = require_complete(store, split, [n for n in names if n != PIXELS], allow_incomplete=allow_incomplete)
        valid = np.intersect1d(np.flatnonzero(store.valid(split)), cov.rows)
        return cls(store, split, names, valid if rows is None else np.intersect1d(valid, rows), every_view, cov)

    @property
    def views(self) -> int:
        """V views stored per item (1: no view axis)."""
        return self.store.views

    @property
    def samples(self) -> int:
        """Samples per pass: items × V when reading every view, else items."""
        return len(self.rows) * (self.views if self.every_view else 1)

    @property
    def mask_size(self) -> int:
        if self._size is None:
            self._size = int(self.store.masks(self.split, slice(0, 1)).shape[-1])
        return self._size

    def channels(self) -> list[int]:
        return [3 if n == PIXELS else self.store.layout(self.split, n).channels for n in self.names]

    def sizes(self) -> list[int]:
        return [self.mask_size if n == PIXELS else self.store.layout(self.split, n).width for n in self.names]

    def _read(self, name: str, lo: int, hi: int, keep: np.ndarray) -> np.ndarray:
        """Rows ``keep`` (absolute, within [lo, hi)) of one array, as stored (float16 stays float16),
        read as the slice lo:hi: (n, C, h, w), or (n, V, C, h, w) with views."""
        if name == PIXELS:
            if self._paths is None:
                self._paths = self.store.paths(self.split)
            if self.views > 1 and self.every_view:
                spec, ids = ViewSpec.of_store(self.store, self.split), self.store.ids(self.split)[keep]
                return np.stack([spec.images(decode_image(str(p)), str(i)) for p, i in zip(self._paths[keep], ids)])
            pixels = np.stack([load_image(str(p), self.mask_size) for p in self._paths[keep]])
            return pixels[:, None] if self.views > 1 else pixels  # view 0 is the evaluation transform
        block = np.asarray(self.store.read_array(self.split, name, items=slice(lo, hi)))
        return block if len(keep) == hi - lo else block[keep - lo]

    def _samples(self, a: np.ndarray) -> np.ndarray:
        """(n, V, …) → the samples: (n·V, …) for every view, (n, …) for view 0; (n, …) without views."""
        if self.views == 1:
            return a
        return a.reshape(-1, *a.shape[2:]) if self.every_view else a[:, 0]

    def row_bytes(self) -> int:
        """Bytes one item takes in a window (maps as stored, uint8 mask; every view, as read)."""
        size = [4 if n == PIXELS else self.store.array_info(self.split, n)[1].itemsize for n in self.names]
        return self.views * (sum(b * c * z * z for b, c, z in zip(size, self.channels(), self.sizes())) + self.mask_size**2)

    def batches(self, batch_size: int, rng: np.random.Generator | None = None,
                max_memory: int = 512 << 20) -> Iterator[tuple[list[Tensor], Tensor]]:  # fmt: skip
        """([(B, C_i, h_i, w_i) float32], (B, S, S) int64 masks), in windows (see :func:`windowed_batches`)."""

        def read(lo: int, hi: int, keep: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
            masks = self.store.masks(self.split, slice(lo, hi))
            masks = masks if len(keep) == hi - lo else masks[keep - lo]
            return [self._samples(self._read(n, lo, hi, keep)) for n in self.names], self._samples(masks)

        return windowed_batches(read, self.rows, self.row_bytes(), batch_size, rng, max_memory)


def windowed_batches(read: Callable[[int, int, np.ndarray], tuple[list[np.ndarray], np.ndarray]], rows: np.ndarray, row_bytes: int,
                     batch_size: int, rng: np.random.Generator | None, max_memory: int) -> Iterator[tuple[list[Tensor], Tensor]]:  # fmt: skip
    """Batches of ``rows`` read in windows of consecutive rows that fit in ``max_memory``.

    ``read(lo, hi, keep)`` returns the maps (as stored) and the masks of the samples of rows ``keep``
    ⊂ [lo, hi) — one per row, or several (a row's views), item-major — each array read as one slice.
    With ``rng``, the windows come in random order and the samples of a window are shuffled before
    they are cut into batches — a full shuffle when all rows fit in one window, a windowed one
    (bounded memory, whatever the number of rows) when they do not. A batch is converted to float32
    (maps) and int64 (masks) only when it is cut.
    """
    window = max(batch_size, (max_memory // max(1, row_bytes)) // batch_size * batch_size)
    starts = list(range(0, len(rows), window))
    if rng is not None:
        starts = [int(v) for v in rng.permutation(starts)]
    for s in starts:
        keep = rows[s : s + window]
        maps, masks = read(int(keep[0]), int(keep[-1]) + 1, keep)
        order = rng.permutation(len(masks)) if rng is not None else np.arange(len(masks))
        for b in range(0, len(masks), batch_size):
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
        views = " (a store's views: train on X.reshape(N·V, C, h, w) with masks.reshape(N·V, S, S), evaluate on X[:, 0], masks[:, 0])"
        for a in arrays:
            if len(a.shape) != 4 or a.shape[0] != n:
                hint = views if len(a.shape) == 5 else ""
                raise ProbeError(f"expected maps of shape (N={n}, C, h, w) for masks {tuple(y.shape)}, got {tuple(a.shape)}{hint}")
        if len(y.shape) != 3 or y.shape[1] != y.shape[2]:
            raise ProbeError(f"expected masks of shape (N, S, S), got {tuple(y.shape)}{views if len(y.shape) == 4 else ''}")
        return cls(arrays, y, np.arange(n))

    @property
    def samples(self) -> int:
        return len(self.rows)

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
