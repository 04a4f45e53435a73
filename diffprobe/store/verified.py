"""The read path's integrity check: every unit a reader reads is tied to the place it was written.

Chunk checksums (crc32c, fletcher32) catch changed bytes, but not a whole chunk (or shard) moved
from another place — another unit's, or another array's — which carries a valid checksum of its
own. Each done marker records, per array, a fingerprint of the unit's rows
(:func:`~diffprobe.store.digests.row_print`: the first row of each chunk) — and, in stores
written before that, only the digest of all of them. :class:`ReadCheck` checks every done unit a
read touches against that record, once per open store, before the rows reach the reader:

- extracted arrays and ``valid``: per unit, the row print of features (cheap: one row per chunk; its
  cost is measured by ``benchmarks/read_integrity.py``), else the unit's digest (all rows: stores
  written before row prints, and ``valid``, whose booleans cost nothing to hash but repeat too
  often for one row to tell chunks apart);
- the item table, when it is read whole: ids and paths by their row print (recorded when the split
  is made), labels by their digest.

Reads are widened to whole units (a unit is the smallest thing a record covers). A mismatch is a
:class:`~diffprobe.errors.StoreCorruptError` that names ``store verify --deep`` and ``store repair``.
Units that are not done, imported arrays and side arrays (written whole; ``store verify --deep``
checks them) are read as they are.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np

from diffprobe.errors import StoreCorruptError
from diffprobe.store.digests import digest, row_print
from diffprobe.store.layout import FeatureKey


class CheckedStore(Protocol):
    """What the check reads of its store (a :class:`~diffprobe.store.store.FeatureStore`)."""

    @property
    def path(self) -> Path: ...

    @property
    def backend(self) -> Any: ...

    def markers(self, split: str) -> dict[int, dict[str, Any]]: ...

    def n_items(self, split: str) -> int: ...

    def unit_size(self, split: str) -> int: ...

Selection = slice | np.ndarray | None
_TABLE = ("label", "item_id", "path")


class ReadCheck:
    """The integrity check of one open :class:`~diffprobe.store.store.FeatureStore`'s reads."""

    #: check reads (``benchmarks/read_integrity.py`` turns it off to measure what it costs)
    enabled: ClassVar[bool] = True

    def __init__(self, store: CheckedStore) -> None:
        self.store = store
        self._marks: dict[str, dict[int, dict[str, Any]]] = {}
        self._split: dict[str, tuple[int, int, dict[str, Any]]] = {}  # (items, unit size, attributes), with the snapshot
        self._checked: set[tuple[str, str, int]] = set()

    def _markers(self, split: str) -> dict[int, dict[str, Any]]:
        if split not in self._marks:  # one snapshot per open store: units finished later are read unchecked
            self._marks[split] = self.store.markers(split)
            self._split[split] = (self.store.n_items(split), self.store.unit_size(split), self.store.backend.group_attrs(split))
        return self._marks[split]

    def rows(self, split: str, name: str, sel: Selection) -> np.ndarray:
        """Rows ``sel`` (all when None) of array ``name``, every done unit they touch checked once."""
        backend = self.store.backend
        if not self.enabled or not (FeatureKey.is_key(name) or name == "valid" or name in _TABLE):
            return backend.read_rows(split, name, sel)
        if name in _TABLE:
            return self._table(split, name, sel)
        marks = self._markers(split)
        n, size, _ = self._split[split]
        lo, hi, idx = _rows_of(sel, n)
        touched = np.unique(idx // size) if idx is not None else np.arange(lo // size, -(-hi // size), dtype=np.int64)
        todo = [int(u) for u in touched if (split, name, int(u)) not in self._checked and _record(marks.get(int(u)), name)]
        if not todo:
            return backend.read_rows(split, name, sel)
        if idx is None:  # one contiguous read of the whole units, then the rows asked for
            base = int(touched[0]) * size
            block = backend.read_rows(split, name, slice(base, min(int(touched[-1] + 1) * size, n)))
            self._check(split, name, block, base, size, todo, marks)
            return block[lo - base : hi - base]
        units = [(int(u) * size, min(int(u + 1) * size, n)) for u in touched]
        block = backend.read_rows(split, name, np.concatenate([np.arange(a, b) for a, b in units]))
        offset = np.zeros(int(touched[-1]) + 1, dtype=np.int64)
        offset[touched] = np.cumsum([0] + [b - a for a, b in units[:-1]])
        self._check(split, name, block, None, size, todo, marks, offset)
        return block[offset[idx // size] + idx % size]

    def _check(self, split: str, name: str, block: np.ndarray, base: int | None, size: int, todo: list[int],
               marks: dict[int, dict[str, Any]], offset: np.ndarray | None = None) -> None:  # fmt: skip
        """Check units ``todo`` of ``block`` (rows from ``base``, or at ``offset[unit]``) against their markers."""
        n = self._split[split][0]
        for u in todo:
            a, b = u * size, min((u + 1) * size, n)
            start = a - base if base is not None else int(offset[u])  # type: ignore[index]
            values = block[start : start + (b - a)]
            if not _matches(values, marks[u], name):
                how = "its row print" if _by_print(values, marks[u], name) else "its digest"
                raise self._damage(split, name, f"unit {u} (items {a}–{b - 1}) does not hold the rows written there ({how} "
                                                "differs from the one recorded when it was written: a chunk was replaced, or moved "
                                                "from another place)")  # fmt: skip
            self._checked.add((split, name, u))

    def _table(self, split: str, name: str, sel: Selection) -> np.ndarray:
        values = self.store.backend.read_rows(split, name, sel)
        if sel is None and (split, name, -1) not in self._checked:
            self._markers(split)
            attrs = self._split[split][2]
            if (attrs.get("prints", {}).get(name) or attrs.get("digests", {}).get(name)) and not _matches(values, attrs, name):
                raise self._damage(split, name, "the item table differs from the one written when the split was made")
            self._checked.add((split, name, -1))
        return values

    def _damage(self, split: str, name: str, what: str) -> StoreCorruptError:
        path = self.store.path
        return StoreCorruptError(f"{split}/{name} of {path}: {what}. `diffprobe store verify --deep {path}` lists every damaged "
                                 f"unit; `diffprobe store repair {path}` recomputes them")  # fmt: skip

    def lazy(self, split: str, name: str) -> Any:
        """A dask array over the array, chunked by unit along N, each block read through :meth:`rows`."""
        import dask.array as da

        shape, dtype, _ = self.store.backend.array_info(split, name)
        self._markers(split)
        chunks = (max(1, self._split[split][1]), *shape[1:])
        return da.from_array(_Rows(self, split, name, shape, dtype), chunks=chunks, asarray=True)


def _rows_of(sel: Selection, n: int) -> tuple[int, int, np.ndarray | None]:
    """(lo, hi, None) for a selection of the contiguous rows [lo, hi); (0, 0, row indices) for any other."""
    if sel is None or isinstance(sel, slice):
        lo, hi, step = (sel or slice(None)).indices(n)
        if step == 1:
            return lo, max(lo, hi), None
        sel = np.arange(lo, hi, step)
    idx = np.asarray(sel)
    return 0, 0, np.flatnonzero(idx) if idx.dtype == bool else idx.astype(np.int64)


def _by_print(values: np.ndarray, record: dict[str, Any], name: str) -> bool:
    """Whether ``values`` are checked by their row print: when one is recorded and the rows are
    features or strings (distinct, so one row per chunk ties them down). Integers and booleans (labels,
    ``valid``) repeat from row to row, and their digest costs next to nothing: all rows are hashed."""
    return name in record.get("prints", {}) and values.dtype.kind not in "biu"


def _matches(values: np.ndarray, record: dict[str, Any], name: str) -> bool:
    """Whether rows ``values`` are those ``record`` (a done marker, or a split's attributes) recorded for ``name``."""
    if _by_print(values, record, name):
        chunk_rows, expected = record["prints"][name]
        return row_print(values, int(chunk_rows)) == expected
    return record.get("digests", {}).get(name) in (None, digest(values))


def _record(marker: dict[str, Any] | None, name: str) -> bool:
    """Whether a unit's marker records ``name`` done, with a print or a digest to check it by."""
    if marker is None or (name != "valid" and name not in marker.get("keys", ())):
        return False
    return name in marker.get("prints", {}) or name in marker.get("digests", {})


class _Rows:
    """An array for ``dask.array.from_array`` whose row reads go through :meth:`ReadCheck.rows`."""

    def __init__(self, check: ReadCheck, split: str, name: str, shape: tuple[int, ...], dtype: np.dtype) -> None:
        self.check, self.split, self.name = check, split, name
        self.shape, self.dtype, self.ndim = tuple(shape), dtype, len(shape)

    def __getitem__(self, index: Any) -> Any:
        index = index if isinstance(index, tuple) else (index,)
        first = index[0] if index else slice(None)
        if isinstance(first, slice):
            return self.check.rows(self.split, self.name, first)[(slice(None), *index[1:])]
        return self.check.rows(self.split, self.name, None)[index]
