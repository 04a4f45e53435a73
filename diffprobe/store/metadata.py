"""Metadata is checked before it is trusted: every shape, dtype, chunk and count a store records.

A store's metadata says how much to read and allocate, so a damaged value (an array's 20 rows edited
to 40 or 10^15, a split's ``n_items`` to 10^12, a chunk size of 0, a negative shape, a dtype that
does not exist, a truncated ``zarr.json``) must be caught before anything relies on it. Each value is
checked against the store's own records and the others, with work and memory bounded by the number
of arrays (never by the values themselves):

- a split's item count: its ``n_items`` and the rows of its item table (``item_id``, ``path``,
  ``label``, ``valid``) must all agree; its ``unit_size`` is ≥ 1;
- each array: readable metadata; rows = the split's items; an extracted array's item shape = its
  recorded :class:`~diffprobe.store.arrays.ArrayLayout`; a dtype of its kind; chunks ≥ 1 row that
  never cross a unit, and shards that are units.

:class:`~diffprobe.store.store.FeatureStore` checks a split when it is first used and an array when
it is first read (a finding is a :class:`~diffprobe.errors.StoreCorruptError`); ``store verify``
lists every finding (:func:`metadata_findings`), ``store info`` shows them, ``store repair`` rebuilds
what the store's records allow.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from diffprobe.errors import StoreError
from diffprobe.store.arrays import ArrayLayout
from diffprobe.store.layout import ITEM_ARRAYS, MASK_ARRAY, VIEW_PARAMS_ARRAY, FeatureKey


class _Records(Protocol):
    """What the checks read of a backend: its groups, their attributes, their arrays' metadata."""

    def groups(self) -> list[str]: ...

    def group_attrs(self, group: str) -> dict[str, Any]: ...

    def arrays(self, group: str) -> list[str]: ...

    def array_meta(self, group: str, name: str) -> ArrayMeta: ...


class RecordedStore(Protocol):
    """A store as these checks see it (a :class:`~diffprobe.store.store.FeatureStore`): its path and backend."""

    @property
    def path(self) -> Path: ...

    @property
    def backend(self) -> _Records: ...

#: the dtypes each kind of array may have
_DTYPES = {"item_id": {"string"}, "path": {"string"}, "label": {"int64"}, "valid": {"bool"}, MASK_ARRAY: {"uint8"},
           VIEW_PARAMS_ARRAY: {"float64"}, "feature": {"float16", "float32"}}  # fmt: skip
_NUMERIC = {"bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float16", "float32", "float64"}


@dataclass(frozen=True)
class ArrayMeta:
    """An array's metadata as its backend records it, unchecked: shape, dtype name, chunk shape,
    shard shape (None: not sharded) and the diffprobe attributes."""

    shape: tuple[Any, ...]
    dtype: str
    chunks: tuple[Any, ...]
    shard: tuple[Any, ...] | None = None
    attrs: dict[str, Any] = field(default_factory=dict)
    dims: tuple[str, ...] = ()


@dataclass(frozen=True)
class Finding:
    """One damaged value: where (split, array — None for the split's own record) and what."""

    split: str
    array: str | None
    text: str

    @property
    def whole_split(self) -> bool:
        """Whether it leaves the split's item count untrusted (its record or item table): then
        nothing of the split can be read or judged."""
        return self.array is None or self.array in ITEM_ARRAYS

    def line(self) -> str:
        where = f"{self.split}/{self.array}" if self.array else f"split {self.split}"
        return f"damaged metadata: {where}: {self.text}"


def as_count(value: Any) -> int | None:
    """``value`` as a count (an int ≥ 0, not a bool), else None."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _shape_problem(meta: ArrayMeta) -> str | None:
    if not meta.shape or any(as_count(d) is None for d in meta.shape):
        return f"its shape {list(meta.shape)} is not a list of counts ≥ 0"
    for what, chunk in (("chunk", meta.chunks), ("shard", meta.shard)):
        if chunk is not None and (len(chunk) != len(meta.shape) or any(as_count(c) is None or c < 1 for c in chunk)):
            return f"its {what} shape {list(chunk)} is not {len(meta.shape)} sizes ≥ 1 (shape {list(meta.shape)})"
    return None


def _rows(store: RecordedStore, split: str, name: str) -> tuple[ArrayMeta | None, str | None]:
    try:
        meta = store.backend.array_meta(split, name)
    except StoreError as e:
        return None, str(e)
    return meta, _shape_problem(meta)


def split_findings(store: RecordedStore, split: str) -> list[Finding]:
    """The split's own record and its item table: ``n_items``, ``unit_size`` and the table's rows agree."""
    out: list[Finding] = []
    try:
        attrs = store.backend.group_attrs(split)
    except StoreError as e:
        return [Finding(split, None, f"its metadata cannot be read ({e})")]
    n, unit = as_count(attrs.get("n_items")), as_count(attrs.get("unit_size"))
    if unit is None or unit < 1:
        out.append(Finding(split, None, f"unit_size is {attrs.get('unit_size')!r}, expected a count ≥ 1"))
    have = set(store.backend.arrays(split))
    rows: dict[str, int] = {}
    for name in ITEM_ARRAYS:
        if name not in have:
            continue  # a split whose creation was cut short: extraction makes it again
        meta, problem = _rows(store, split, name)
        if meta is None or problem:
            out.append(Finding(split, name, problem or "its metadata cannot be read"))
            continue
        if len(meta.shape) != 1 or meta.dtype not in _DTYPES[name]:
            out.append(
                Finding(split, name, f"it is {list(meta.shape)} {meta.dtype}, an item-table array is (N,) {sorted(_DTYPES[name])[0]}")
            )
            continue
        rows[name] = int(meta.shape[0])
    votes = Counter(rows.values())
    if n is not None:
        votes[n] += 1
    truth = votes.most_common(1)[0][0] if votes else n
    if n is None or n != truth:
        out.append(Finding(split, None, f"n_items is {attrs.get('n_items')!r}, but its item table has {truth} rows"))
    out += [Finding(split, name, f"it has {r} rows, but the split has {truth} items") for name, r in rows.items() if r != truth]
    return out


def array_findings(store: RecordedStore, split: str, name: str, n: int, unit: int) -> list[Finding]:
    """One array of a split of ``n`` items in units of ``unit``: readable metadata, rows, item shape, dtype, chunks."""
    meta, problem = _rows(store, split, name)
    if meta is None or problem:
        return [Finding(split, name, problem or "its metadata cannot be read")]
    out = []
    if meta.shape[0] != n:
        out.append(f"it has {meta.shape[0]} rows, but the split has {n} items")
    kind = "feature" if FeatureKey.is_key(name) else name if name in _DTYPES else None
    if meta.dtype not in (_DTYPES[kind] if kind else _NUMERIC):
        out.append(f"its dtype {meta.dtype!r} is not one of {', '.join(sorted(_DTYPES[kind] if kind else _NUMERIC))}")
    if kind == "feature":
        try:
            ArrayLayout.recorded(name, meta.shape, meta.attrs, meta.dims)
        except StoreError as e:
            out.append(str(e).split(": its metadata")[0])
    elif len(meta.shape) < 2 and name not in ITEM_ARRAYS:
        out.append(f"its shape {list(meta.shape)} has no axis after the item axis")
    rows = int(meta.chunks[0])
    if list(meta.chunks[1:]) != list((meta.shard or meta.shape)[1:]):
        out.append(f"its chunks {list(meta.chunks)} do not hold whole items (shape {list(meta.shape)})")
    whole_units = rows <= unit and unit % rows == 0 or rows == n < unit  # HDF5: one chunk of a split smaller than a unit
    if unit >= 1 and n and not whole_units and (FeatureKey.is_key(name) or name == "valid"):
        out.append(f"its chunks of {rows} rows cross its units of {unit} items")
    if meta.shard is not None and int(meta.shard[0]) != unit:
        out.append(f"its shards of {meta.shard[0]} rows are not its units of {unit} items")
    return [Finding(split, name, t) for t in out]


def metadata_findings(store: RecordedStore, splits: list[str] | None = None) -> list[Finding]:
    """Every finding of every split (or ``splits``) and its arrays; bounded by the number of arrays."""
    out: list[Finding] = []
    for split in splits or store.backend.groups():
        found = split_findings(store, split)
        out += found
        if found:
            continue  # without a trusted item count, the arrays' rows cannot be judged
        attrs = store.backend.group_attrs(split)
        n, unit = int(attrs["n_items"]), int(attrs["unit_size"])
        for name in store.backend.arrays(split):
            if name not in ITEM_ARRAYS:
                out += array_findings(store, split, name, n, unit)
    return out


def damaged(store: RecordedStore, findings: list[Finding]) -> StoreError:
    """The error a reader gets for damaged metadata: the first findings, and what to do."""
    from diffprobe.errors import StoreCorruptError

    shown = "; ".join(f.line().removeprefix("damaged metadata: ") for f in findings[:3]) + (" …" if len(findings) > 3 else "")
    return StoreCorruptError(f"the metadata of {store.path} is damaged ({shown}), so its data cannot be trusted or read. "
                             f"`diffprobe store verify {store.path}` lists every finding; `diffprobe store repair {store.path}` "
                             "rebuilds what the store's own records allow")  # fmt: skip
