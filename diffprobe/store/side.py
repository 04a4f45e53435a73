"""A split's side arrays — segmentation masks and view parameters — stored once, when the split is made."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from diffprobe.errors import StoreError, StoreKeyError
from diffprobe.store.backend import Backend
from diffprobe.store.digests import digest
from diffprobe.store.layout import IGNORE_INDEX, MASK_ARRAY, VIEW_PARAMS_ARRAY, chunk_items


class SideArrays:
    """Masks and view parameters of a :class:`~diffprobe.store.store.FeatureStore` (mixed into it)."""

    backend: Backend

    # Provided by FeatureStore.
    @property
    def path(self) -> Path:
        raise NotImplementedError

    def _split(self, split: str) -> str:
        raise NotImplementedError

    def n_items(self, split: str) -> int:
        raise NotImplementedError

    def unit_size(self, split: str) -> int:
        raise NotImplementedError

    def has_masks(self, split: str) -> bool:
        return MASK_ARRAY in self.backend.arrays(self._split(split))

    def masks(self, split: str, items: slice | np.ndarray | None = None) -> np.ndarray:
        """(n, S, S) uint8 segmentation masks (class per pixel, ``IGNORE_INDEX`` where none) — (n, V, S, S),
        one per view, when V > 1 views were extracted."""
        if not self.has_masks(split):
            raise StoreKeyError(f"split {split!r} of {self.path} has no masks: extract from data with masks (a 'mask' column, or images/ + masks/)")
        return self.backend.read_rows(self._split(split), MASK_ARRAY, items)

    def write_masks(self, split: str, masks: np.ndarray) -> None:
        """Store a split's (N, S, S) — or (N, V, S, S) — uint8 masks (once, when the split is made)."""
        n = self.n_items(split)
        if masks.shape[0] != n or masks.ndim not in (3, 4) or masks.dtype != np.uint8:
            raise StoreError(f"masks of split {split!r} must be ({n}, S, S) or ({n}, V, S, S) uint8, got {masks.shape} {masks.dtype}")
        dims = ("item", *(("view",) if masks.ndim == 4 else ()), "mask_h", "mask_w")
        self._write_side(split, MASK_ARRAY, masks, dims, {"kind": "mask", "ignore_index": IGNORE_INDEX})

    def has_view_params(self, split: str) -> bool:
        return VIEW_PARAMS_ARRAY in self.backend.arrays(self._split(split))

    def view_params(self, split: str, items: slice | np.ndarray | None = None) -> tuple[dict[str, Any], np.ndarray]:
        """({"augment": name, "fields": parameter names, "size": view size S, "seed": seed}, (n, V, P)
        float64 parameters) of the items' views; view 0 (the evaluation transform) has NaN parameters."""
        if not self.has_view_params(split):
            raise StoreKeyError(f"split {split!r} of {self.path} has one view per item (extract with --views V to cache augmented views)")
        _, _, attrs = self.backend.array_info(self._split(split), VIEW_PARAMS_ARRAY)
        how = {"augment": str(attrs["augment"]), "fields": tuple(attrs["fields"]), "size": int(attrs["size"]), "seed": int(attrs["seed"])}
        return how, self.backend.read_rows(split, VIEW_PARAMS_ARRAY, items)

    def write_view_params(self, split: str, augment: str, fields: tuple[str, ...], size: int, seed: int, params: np.ndarray) -> None:
        """Record a split's (N, V, P) view parameters, made by ``augment`` at ``size`` × ``size``
        from ``seed`` (once, when the split is made)."""
        n = self.n_items(split)
        if params.ndim != 3 or params.shape[0] != n or params.shape[2] != len(fields):
            raise StoreError(f"view parameters of split {split!r} must be ({n}, V, {len(fields)}), got {params.shape}")
        attrs = {"kind": "view_params", "augment": augment, "fields": list(fields), "size": int(size), "seed": int(seed)}
        self._write_side(split, VIEW_PARAMS_ARRAY, params.astype(np.float64), ("item", "view", "param"), attrs)

    def _write_side(self, split: str, name: str, data: np.ndarray, dims: tuple[str, ...], attrs: dict[str, Any]) -> None:
        """Create and write a side array whole; its digest goes into its attributes (``store verify --deep``)."""
        row = int(np.prod(data.shape[1:], dtype=np.int64)) * data.dtype.itemsize
        unit = self.unit_size(split)
        attrs = {**attrs, "digest": digest(data)}
        self.backend.create_array(split, name, tuple(data.shape), str(data.dtype), chunk_items(unit, row), unit, dims, attrs)
        self.backend.write_rows(split, name, 0, data)
        self.backend.flush()

    def rewrite_side(self, split: str, name: str, data: np.ndarray) -> None:
        """Write a damaged side array's values again (``store repair``): they must be what was written."""
        shape, dtype, attrs = self.backend.array_info(self._split(split), name)
        if tuple(data.shape) != tuple(shape) or data.dtype != dtype or attrs.get("digest") not in (None, digest(data)):
            raise StoreError(f"{split}/{name}: the values made again differ from what was written; "
                             "pass --data with the data the store was made from")  # fmt: skip
        self.backend.write_rows(split, name, 0, data)
        self.backend.flush()

