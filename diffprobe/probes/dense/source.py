"""Batches of (feature maps, masks) streamed from a store — memory bounded by one batch, whatever the
number of items — or of raw pixels, the per-pixel baseline."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from diffprobe.errors import StoreKeyError
from diffprobe.extract.data import load_image
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
        """([(B, C_i, h_i, w_i) float32], (B, S, S) int64 masks).

        The rows are read in windows of consecutive rows that fit in ``max_memory`` (each array read
        as one slice, held as stored; a batch is converted to float32 when it is cut); with ``rng``,
        the windows come in random order and the rows of a window are shuffled before they are cut
        into batches — a full shuffle when the split fits in one window, a windowed one (bounded
        memory, whatever the number of items) when it does not.
        """
        window = max(batch_size, (max_memory // max(1, self.row_bytes())) // batch_size * batch_size)
        starts = list(range(0, len(self.rows), window))
        if rng is not None:
            starts = [int(v) for v in rng.permutation(starts)]
        for s in starts:
            keep = self.rows[s : s + window]
            lo, hi = int(keep[0]), int(keep[-1]) + 1
            maps = [self._read(n, lo, hi, keep) for n in self.names]
            masks = self.store.masks(self.split, slice(lo, hi))
            masks = masks if len(keep) == hi - lo else masks[keep - lo]
            order = rng.permutation(len(keep)) if rng is not None else np.arange(len(keep))
            for b in range(0, len(keep), batch_size):
                idx = np.sort(order[b : b + batch_size])
                yield [torch.from_numpy(m[idx].astype(np.float32)) for m in maps], torch.from_numpy(masks[idx].astype(np.int64))
            del maps, masks
