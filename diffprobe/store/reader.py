"""The store-reading contract: what probes, CKA and sweeps need from a feature store.

:class:`~diffprobe.store.store.FeatureStore` (Zarr or HDF5 on disk) and
:class:`~diffprobe.store.memory.MemoryStore` (arrays in memory, e.g. raw pixels for a baseline)
both satisfy it, so everything downstream of extraction takes a ``StoreReader``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from diffprobe.store.arrays import ArrayLayout
from diffprobe.store.layout import FeatureKey, array_name


@runtime_checkable
class StoreReader(Protocol):
    """Splits of items; per split an item table and arrays named by :class:`FeatureKey` (or freely,
    for imported arrays), each (N, ...) with one row per item.

    Implementations subclass it and provide :meth:`read_array`; :meth:`read` (by key or by t, block
    and pool) is defined here, once.
    """

    @property
    def path(self) -> Path:
        """Where the store lives (``<memory>`` for in-memory stores)."""

    @property
    def class_names(self) -> list[str]: ...

    @property
    def config_hash(self) -> str:
        """Hash of the extraction identity ("" when there is none)."""

    @property
    def splits(self) -> list[str]: ...

    @property
    def views(self) -> int:
        """V views per item: extracted arrays are (N, V, …) when V > 1, view 0 the evaluation transform."""
        return 1

    def keys(self, split: str) -> list[str]:
        """Names of the split's feature and imported arrays (not the item table), sorted."""

    def feature_keys(self, split: str) -> list[FeatureKey]:
        """The split's extracted (t, block, pool) keys, sorted."""

    def array_info(self, split: str, name: str) -> tuple[tuple[int, ...], np.dtype, dict[str, Any]]:
        """(shape, dtype, attrs) of one array."""

    def layout(self, split: str, name: str) -> ArrayLayout:
        """The per-item layout of one array, as recorded (see :class:`~diffprobe.store.arrays.ArrayLayout`)."""
        shape, _, attrs = self.array_info(split, name)
        return ArrayLayout.recorded(name, shape, attrs)

    def read_array(self, split: str, name: str, *, lazy: bool = False, items: slice | np.ndarray | None = None) -> Any:
        """The array ``name`` of ``split``: (N, ...) numpy, or a dask array chunked along N when
        ``lazy``; ``items`` reads only those rows (ignored when lazy)."""

    def read(
        self,
        split: str,
        key: str | int | FeatureKey,
        block: int | str | None = None,
        pool: str | int | None = None,
        *,
        lazy: bool = False,
        items: slice | np.ndarray | None = None,
    ) -> Any:
        """One array: ``read(split, "t0090_b24_p2")``, ``read(split, key)`` or ``read(split, t, block, pool)``.

        Args:
            pool: a pool size, or "full"/None for the native map.
            lazy: return a dask array chunked along N instead of loading.
            items: a slice or index array of rows to read (ignored when lazy).
        Returns:
            (N, C, p, p) array — (N, [V,] [K,] C, p, p) with V views, K noise draws kept — float16/float32,
            with NaN rows for items whose image failed.
        """
        return self.read_array(split, array_name(key, block, pool), lazy=lazy, items=items)

    def labels(self, split: str) -> np.ndarray:
        """(N,) int64 class indices; -1 where an item has no label."""

    def ids(self, split: str) -> np.ndarray:
        """(N,) stable item ids."""

    def paths(self, split: str) -> np.ndarray:
        """(N,) source paths."""

    def valid(self, split: str) -> np.ndarray:
        """(N,) bool: False for items whose features are missing (NaN rows)."""
