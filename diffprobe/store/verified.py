"""The read path's integrity check: every unit a reader reads is tied to the place it was written.

Chunk checksums (crc32c, fletcher32) catch changed bytes, but not a whole chunk (or shard) moved
from another place — another unit's, or another array's — which carries a valid checksum of its
own. Each done marker records, per array, a fingerprint of the unit's rows
(:func:`~diffprobe.store.digests.row_print`: the first and last row of each chunk) — and, in stores
written before that, only the digest of all of them. :class:`ReadCheck` checks every done unit a
read touches against that record, once per open store, before the rows reach the reader:

- extracted arrays and ``valid``: per unit, the row print (cheap: 2 rows per chunk; its cost is
  measured by ``benchmarks/read_integrity.py``), else the unit's digest (all rows);
- the item table (``label``, ``item_id``, ``path``): its digest, when it is read whole.

Reads are widened to whole units (a unit is the smallest thing a record covers). A mismatch is a
:class:`~diffprobe.errors.StoreCorruptError` that names ``store verify --deep`` and ``store repair``.
Units that are not done, imported arrays and side arrays (written whole; ``store verify --deep``
checks them) are read as they are.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from diffprobe.errors import StoreCorruptError
from diffprobe.store.digests import digest, row_print
from diffprobe.store.layout import FeatureKey

if TYPE_CHECKING:
    from diffprobe.store.store import FeatureStore

Selection = slice | np.ndarray | None
_TABLE = ("label", "item_id", "path")


class ReadCheck:
    """The integrity check of one open :class:`~diffprobe.store.store.FeatureStore`'s reads."""

    #: check reads (``benchmarks/read_integrity.py`` turns it off to measure what it costs)
    enabled: ClassVar[bool] = True

    def __init__(self, store: FeatureStore) -> None:
        self.store = store
        self._marks: dict[str, dict[int, dict[str, Any]]] = {}
        self._checked: set[tuple[str, str, int]] = set()

    def _markers(self, split: str) -> dict[int, dict[str, Any]]:
        if split not in self._marks:  # one snapshot per open store: units finished later are read unchecked
            self._marks[split] = self.store.markers(split)
        return self._marks[split]

    def rows(self, split: str, name: str, sel: Selection) -> np.ndarray:
        """Rows ``sel`` (all when None) of array ``name``, every done unit they touch checked once."""
        backend = self.store.backend
        if not self.enabled or not (FeatureKey.is_key(name) or name == "valid" or name in _TABLE):
            return backend.read_rows(split, name, sel)
        if name in _TABLE:
            return self._table(split, name, sel)
        n, size = self.store.n_items(split), self.store.unit_size(split)
        idx = None if sel is None or isinstance(sel, slice) else np.asarray(sel)
        if idx is not None and idx.dtype == bool:
            idx = np.flatnonzero(idx)
        if idx is None:
            lo, hi, step = (sel or slice(None)).indices(n)
            if step != 1:
                idx = np.arange(lo, hi, step)
        touched = np.unique(idx // size) if idx is not None else np.arange(lo // size, -(-hi // size)) if hi > lo else np.zeros(0, int)
        marks = self._markers(split)
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
        n = self.store.n_items(split)
        for u in todo:
            a, b = u * size, min((u + 1) * size, n)
            start = a - base if base is not None else int(offset[u])  # type: ignore[index]
            values = block[start : start + (b - a)]
            m = marks[u]
            rec = m.get("prints", {}).get(name)
            if rec is not None:
                ok, how = row_print(values, int(rec[0])) == rec[1], "its row print"
            else:
                ok, how = digest(values) == m["digests"][name], "its digest"
            if not ok:
                raise self._damage(split, name, f"unit {u} (items {a}–{b - 1}) does not hold the rows written there ({how} "
                                                "differs from the one recorded when it was written: a chunk was replaced, or moved "
                                                "from another place)")  # fmt: skip
            self._checked.add((split, name, u))

    def _table(self, split: str, name: str, sel: Selection) -> np.ndarray:
        values = self.store.backend.read_rows(split, name, sel)
        if sel is None and (split, name, -1) not in self._checked:
            recorded = self.store.backend.group_attrs(split).get("digests", {}).get(name)
            if recorded is not None and digest(values) != recorded:
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
        chunks = (max(1, self.store.unit_size(split)), *shape[1:])
        return da.from_array(_Rows(self, split, name, shape, dtype), chunks=chunks, asarray=True)


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
