"""An in-memory store that satisfies :class:`~diffprobe.store.reader.StoreReader`.

It lets anything that is not in a store on disk — raw pixels for a baseline, features computed by
other code — go through exactly the same probe and CKA pipelines (splits, subsets,
standardisation, metrics). Array names that look like feature keys (``t0090_b13_p2``) are extracted
arrays; any other name is an imported one. With ``views`` V > 1 the extracted arrays carry a view axis,
(N, V, [K,] C, H, W), as in a store extracted with ``--views V``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from diffprobe.errors import StoreError, StoreKeyError
from diffprobe.store.arrays import ArrayLayout
from diffprobe.store.layout import FeatureKey
from diffprobe.store.reader import StoreReader


@dataclass
class MemorySplit:
    """One split: arrays (N, [V,] [K,] C, H, W) by name, and the item table."""

    arrays: dict[str, np.ndarray]
    labels: np.ndarray
    ids: np.ndarray | None = None
    paths: np.ndarray | None = None
    valid: np.ndarray | None = None


class MemoryStore(StoreReader):
    """Splits of in-memory arrays, readable like a :class:`diffprobe.store.FeatureStore`."""

    def __init__(
        self, data: dict[str, MemorySplit], class_names: Sequence[str] = (), config_hash: str = "", path: str | Path = "<memory>",
        views: int = 1,
    ) -> None:
        if views < 1:
            raise StoreError(f"expected views ≥ 1, got {views}")
        self.data = data
        self._class_names = list(class_names)
        self._config_hash = config_hash
        self._path = Path(path)
        self._views = int(views)

    @property
    def views(self) -> int:
        return self._views

    @property
    def path(self) -> Path:
        return self._path

    @property
    def class_names(self) -> list[str]:
        return list(self._class_names)

    @property
    def config_hash(self) -> str:
        return self._config_hash

    @classmethod
    def from_arrays(
        cls,
        arrays: Mapping[str, Mapping[str, np.ndarray]],
        labels: Mapping[str, Sequence[int] | np.ndarray],
        class_names: Sequence[str] = (),
        ids: Mapping[str, Sequence[str]] | None = None,
        views: int = 1,
    ) -> MemoryStore:
        """``arrays[split][name]`` and ``labels[split]`` → a store; ids default to ``"<split>/<row>"``;
        ``views``: V of the extracted arrays (N, V, …) (1: no view axis)."""
        data = {}
        for split, named in arrays.items():
            if split not in labels:
                raise StoreError(f"expected labels for split {split!r}; got labels for {sorted(labels)}")
            y = np.asarray(labels[split], dtype=np.int64)
            item_ids = np.asarray(ids[split] if ids and split in ids else [f"{split}/{i}" for i in range(len(y))])
            data[split] = MemorySplit({k: np.asarray(v) for k, v in named.items()}, y, item_ids)
        return cls(data, list(class_names), views=views)

    @property
    def splits(self) -> list[str]:
        return list(self.data)

    def _split(self, split: str) -> MemorySplit:
        if split not in self.data:
            raise StoreKeyError(f"no split {split!r}; splits: {', '.join(self.data) or 'none'}")
        return self.data[split]

    def keys(self, split: str) -> list[str]:
        return sorted(self._split(split).arrays)

    def feature_keys(self, split: str) -> list[FeatureKey]:
        return sorted(k for k in map(FeatureKey.maybe, self.keys(split)) if k is not None)

    def _array(self, split: str, name: str) -> np.ndarray:
        arrays = self._split(split).arrays
        if name not in arrays:
            raise StoreKeyError(f"no array {name!r} in split {split!r}; arrays: {', '.join(sorted(arrays)) or 'none'}")
        return arrays[name]

    def array_info(self, split: str, name: str) -> tuple[tuple[int, ...], np.dtype, dict[str, Any]]:
        arr = self._array(split, name)
        return tuple(arr.shape), arr.dtype, {"layout": self._layout(name, tuple(arr.shape)).to_attrs()}

    def _layout(self, name: str, shape: tuple[int, ...]) -> ArrayLayout:
        """An in-memory array's layout, read from its name and shape once, here (the edge where
        arrays come in): extracted ones (N, [V,] [K,] C, H, W), with V when the store has views;
        any other name an imported array."""
        if FeatureKey.maybe(name) is None:
            return ArrayLayout.imported(shape)
        lead = len(shape) - 4
        views = self._views if self._views > 1 else 1
        if lead not in ((1, 2) if views > 1 else (0, 1)):
            want = "(N, V, [K,] C, H, W)" if views > 1 else "(N, [K,] C, H, W)"
            raise StoreError(f"expected array {name!r} to be {want}, got shape {shape}")
        draws = shape[1 + (views > 1)] if lead - (views > 1) == 1 else 1
        if views > 1 and shape[1] != views:
            raise StoreError(f"expected array {name!r} to hold the store's {views} views on axis 1, got shape {shape}")
        c, h, w = shape[-3:]
        return ArrayLayout.of_map(c, h, w, views=views, draws=draws)

    def read_array(self, split: str, name: str, *, lazy: bool = False, items: slice | np.ndarray | None = None) -> Any:
        arr = self._array(split, name)
        if lazy:
            import dask.array as da

            return da.from_array(arr, chunks=(max(1, min(len(arr), 256)), *arr.shape[1:]))
        return arr if items is None else arr[items]

    def labels(self, split: str) -> np.ndarray:
        return self._split(split).labels

    def ids(self, split: str) -> np.ndarray:
        s = self._split(split)
        return s.ids if s.ids is not None else np.asarray([f"{split}/{i}" for i in range(len(s.labels))])

    def paths(self, split: str) -> np.ndarray:
        s = self._split(split)
        return s.paths if s.paths is not None else self.ids(split)

    def valid(self, split: str) -> np.ndarray:
        s = self._split(split)
        return s.valid if s.valid is not None else np.ones(len(s.labels), dtype=bool)
