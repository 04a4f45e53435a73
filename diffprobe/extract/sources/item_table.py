"""A split's items stored by column: :class:`ItemTable`, a ``Sequence[Item]`` of ~25 bytes per item.

ImageNet's 1.28M items as :class:`~diffprobe.extract.sources.item.Item` objects take ~200 bytes
each (the object, its id string, its integers); the planner, the dask client and ``store repair``
hold every item of a run. Here each field is one numpy column — strings as fixed-width UTF-8
bytes, or as small codes into their distinct values when few — and an ``Item`` is made only when
one is asked for (a loader worker's ``items[i]``). Slices are views: a unit's items are pickled to
a dask worker as its rows alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, overload

import numpy as np

from diffprobe.extract.sources.item import Item

#: Rows converted at a time (building columns, hashing): bounds the temporaries of a large split.
WINDOW = 65_536
#: A string column with at most this many distinct values is stored as codes into them.
MAX_CODED = 4_096


def small_int(values: np.ndarray) -> np.ndarray:
    """``values`` (int64) in the narrowest integer dtype that holds them."""
    if values.size == 0:
        return values.astype(np.int8)
    lo, hi = int(values.min()), int(values.max())
    for dt in (np.int8, np.int16, np.int32):
        if np.iinfo(dt).min <= lo and hi <= np.iinfo(dt).max:
            return values.astype(dt)
    return values.astype(np.int64)


def contiguous(i: slice, n: int) -> tuple[int, int]:
    """[lo, hi) of a step-1 slice of ``n`` rows (the only slices a column or table takes)."""
    lo, hi, step = i.indices(n)
    if step != 1:
        raise IndexError("item columns are sliced by contiguous rows only")
    return lo, max(lo, hi)


class StrColumn:
    """(N,) strings: UTF-8 bytes in a fixed-width numpy array, or codes into at most
    :data:`MAX_CODED` distinct values (paths shared by a tar's members, a source kind, ``""``)."""

    __slots__ = ("_codes", "_data", "_values")

    def __init__(self, data: np.ndarray | None = None, codes: np.ndarray | None = None, values: tuple[str, ...] = ()) -> None:
        self._data, self._codes, self._values = data, codes, values

    @classmethod
    def of(cls, values: Sequence[str]) -> StrColumn:
        """The column of ``values``, coded when they repeat enough, else as bytes (built a window at a time)."""
        n = len(values)
        distinct: dict[str, int] = {}
        for v in values:
            if v not in distinct:
                distinct[v] = len(distinct)
                if len(distinct) > MAX_CODED:
                    break
        if len(distinct) <= MAX_CODED:
            codes = np.fromiter((distinct[v] for v in values), dtype=np.int64, count=n)
            return cls(codes=small_int(codes), values=tuple(distinct))
        width = max((len(v.encode()) for v in values), default=1)
        data = np.empty(n, dtype=f"S{max(1, width)}")
        for lo in range(0, n, WINDOW):
            data[lo : lo + WINDOW] = [v.encode() for v in values[lo : lo + WINDOW]]
        return cls(data=data)

    @classmethod
    def constant(cls, value: str, n: int) -> StrColumn:
        return cls(codes=np.zeros(n, dtype=np.int8), values=(value,))

    def __len__(self) -> int:
        return len(self._data if self._data is not None else self._codes)  # type: ignore[arg-type]

    @overload
    def __getitem__(self, i: int) -> str: ...
    @overload
    def __getitem__(self, i: slice) -> StrColumn: ...
    def __getitem__(self, i: int | slice) -> str | StrColumn:
        if isinstance(i, slice):
            return self.window(*contiguous(i, len(self)))
        if self._data is not None:
            return bytes(self._data[i]).decode()
        return self._values[self._codes[i]]  # type: ignore[index]

    def window(self, lo: int, hi: int) -> StrColumn:
        """Rows [lo, hi) as a column sharing this one's memory."""
        if self._data is not None:
            return StrColumn(data=self._data[lo:hi])
        return StrColumn(codes=self._codes[lo:hi], values=self._values)  # type: ignore[index]

    def strings(self, lo: int = 0, hi: int | None = None) -> np.ndarray:
        """Rows [lo, hi) as a numpy str array."""
        if self._data is not None:
            return np.char.decode(self._data[lo:hi], "utf-8")
        return np.asarray(self._values, dtype=str)[self._codes[lo:hi]] if self._values else np.zeros(0, dtype=str)  # type: ignore[index]

    @property
    def nbytes(self) -> int:
        """Bytes of the column's arrays (the distinct values of a coded column not counted)."""
        return sum(a.nbytes for a in (self._data, self._codes) if a is not None)

    def any(self) -> bool:
        """Whether some value is not the empty string."""
        if self._data is not None:
            return bool((self._data != b"").any())
        used = np.unique(self._codes)  # type: ignore[arg-type]
        return any(self._values[int(c)] for c in used)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self.strings()
        return out if dtype is None else out.astype(dtype)


class ItemTable(Sequence[Item]):
    """A split's items (N,) by column; ``table[i]`` is an :class:`Item`, ``table[a:b]`` a table of those rows."""

    __slots__ = ("ids", "paths", "labels", "kinds", "offsets", "sizes", "members", "masks")

    def __init__(self, ids: StrColumn, paths: StrColumn, labels: np.ndarray, kinds: StrColumn, offsets: np.ndarray,
                 sizes: np.ndarray, members: StrColumn, masks: StrColumn) -> None:  # fmt: skip
        n = len(ids)
        if not all(len(c) == n for c in (paths, labels, kinds, offsets, sizes, members, masks)):
            raise ValueError("every column of an item table must have one value per item")
        self.ids, self.paths, self.labels, self.kinds = ids, paths, labels, kinds
        self.offsets, self.sizes, self.members, self.masks = offsets, sizes, members, masks

    @classmethod
    def of(cls, items: Iterable[Item]) -> ItemTable:
        """The table of ``items`` (a list, or a table: returned as it is)."""
        if isinstance(items, ItemTable):
            return items
        its = items if isinstance(items, Sequence) else list(items)
        col = StrColumn.of
        ints = lambda f: small_int(np.fromiter((getattr(it, f) for it in its), dtype=np.int64, count=len(its)))  # noqa: E731
        return cls(col([it.id for it in its]), col([it.path for it in its]), ints("label"), col([it.kind for it in its]),
                   ints("offset"), ints("size"), col([it.member for it in its]), col([it.mask for it in its]))  # fmt: skip

    def __len__(self) -> int:
        return len(self.ids)

    @overload
    def __getitem__(self, i: int) -> Item: ...
    @overload
    def __getitem__(self, i: slice) -> ItemTable: ...
    def __getitem__(self, i: int | slice) -> Item | ItemTable:
        if isinstance(i, slice):
            return self.window(*contiguous(i, len(self)))
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"item {i} of a table of {n}")
        i %= n
        return Item(self.ids[i], self.paths[i], int(self.labels[i]), self.kinds[i], int(self.offsets[i]), int(self.sizes[i]),
                    self.members[i], self.masks[i])  # fmt: skip

    def window(self, lo: int, hi: int) -> ItemTable:
        """Rows [lo, hi), sharing this table's memory."""
        return ItemTable(self.ids.window(lo, hi), self.paths.window(lo, hi), self.labels[lo:hi], self.kinds.window(lo, hi),
                         self.offsets[lo:hi], self.sizes[lo:hi], self.members.window(lo, hi), self.masks.window(lo, hi))  # fmt: skip

    def __iter__(self) -> Iterator[Item]:
        for i in range(len(self)):
            yield self[i]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, str):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other))

    __hash__ = None  # type: ignore[assignment]

    def __add__(self, other: Sequence[Item]) -> list[Item]:
        """The items of both, as a list (as two lists of items would add)."""
        return [*self, *other]

    def __radd__(self, other: Sequence[Item]) -> list[Item]:
        return [*other, *self]

    def __repr__(self) -> str:
        return f"ItemTable({len(self)} items)"

    @property
    def nbytes(self) -> int:
        """Bytes of the table's columns."""
        return sum(getattr(self, column).nbytes for column in self.__slots__)

    def has_masks(self) -> bool:
        return self.masks.any()

    def hash_ids_and_labels(self, h: Any) -> None:
        """Feed ``h`` (a hashlib object) the line "<id>\\t<label>\\n" of every item, a window at a time."""
        for lo in range(0, len(self), WINDOW):
            ids = self.ids.strings(lo, lo + WINDOW).tolist()
            labels = self.labels[lo : lo + WINDOW].tolist()
            h.update("".join(f"{i}\t{y}\n" for i, y in zip(ids, labels)).encode())
