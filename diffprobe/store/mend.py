"""Rebuilding damaged metadata from what the store itself records (the first step of ``store repair``).

A finding of :mod:`~diffprobe.store.metadata` is mended when the store's other records say what the
value was:

- a split's ``n_items`` — from its item table, when its four arrays agree; its ``unit_size`` — from
  the item table's chunks (one unit each, as a split is made);
- an item-table array's metadata — (N,) of its dtype, one unit per chunk, as a split is made;
- an extracted array's metadata — from its key, its layout (its own record if readable, else the
  extraction plan's), the store's dtype and block table: exactly what extraction wrote
  (:func:`~diffprobe.store.arrays.feature_array_args`).

Only the metadata is written again; the chunks stay as they are, and the deep check that follows
(digests of every unit) decides whether their values are the ones written. What cannot be mended is
said plainly: imported and side arrays (made from data the store does not hold), backends that
cannot rewrite one array's metadata (HDF5), an item table whose arrays disagree.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from diffprobe.errors import StoreError
from diffprobe.store.arrays import ArrayLayout, feature_array_args
from diffprobe.store.layout import ITEM_ARRAYS, ITEM_DTYPES, FeatureKey
from diffprobe.store.metadata import Finding, as_count, metadata_findings
from diffprobe.store.store import FeatureStore

#: the layout extraction planned for an array (split, name) → layout, for records that cannot be read
PlannedLayout = Callable[[str, str], ArrayLayout | None]


@dataclass
class Mended:
    """What :func:`mend_metadata` rebuilt, and what it could not (with why)."""

    rebuilt: list[str] = field(default_factory=list)
    cannot: list[str] = field(default_factory=list)


def _split_record(store: FeatureStore, split: str) -> tuple[int | None, int | None]:
    """(items, unit size) of ``split`` as its item table records them (None: the table disagrees or cannot say)."""
    rows, units = set(), set()
    for name in ITEM_ARRAYS:
        try:
            meta = store.backend.array_meta(split, name)
        except StoreError:
            continue
        if meta.shape and as_count(meta.shape[0]) is not None:
            rows.add(meta.shape[0])
        if meta.chunks and as_count(meta.chunks[0]):
            units.add(meta.chunks[0])
    return (rows.pop() if len(rows) == 1 else None), (units.pop() if len(units) == 1 else None)


def mend_metadata(store: FeatureStore, planned: PlannedLayout) -> Mended:
    """Rebuild every damaged value the store's records allow (``store`` open for writing)."""
    out = Mended()
    found = metadata_findings(store)
    for split in dict.fromkeys(f.split for f in found):
        _mend_split(store, split, [f for f in found if f.split == split], planned, out)
    if out.rebuilt and not out.cannot:
        store.commit()  # consolidated metadata for other readers (zarr would refuse what is still damaged)
    return out


def _mend_split(store: FeatureStore, split: str, found: list[Finding], planned: PlannedLayout, out: Mended) -> None:
    n, unit = _split_record(store, split)
    try:
        attrs = store.backend.group_attrs(split)
    except StoreError:  # the split's own metadata is unreadable: its item table still says how many items
        if n is None or unit is None or not store.backend.replace_group_attrs(split, {"n_items": n, "unit_size": unit}):
            out.cannot.append(f"split {split}: its metadata cannot be read, nor its item count told from its item table; "
                              "extract it again into a new store")  # fmt: skip
            return
        out.rebuilt.append(f"split {split}: n_items {n}, unit_size {unit} (from its item table; the item table's recorded "
                           "digests were lost with it, so `verify --deep` can no longer compare the table)")  # fmt: skip
        found = metadata_findings(store, [split])
        attrs = store.backend.group_attrs(split)
    votes = [f for f in found if f.whole_split]
    if votes:
        if n is None or unit is None:
            n, unit = as_count(attrs.get("n_items")), as_count(attrs.get("unit_size"))
        if n is None or not unit:
            out.cannot.append(f"split {split}: its item count cannot be told from its records (n_items {attrs.get('n_items')!r}, and "
                              "its item table's arrays disagree); extract it again into a new store")  # fmt: skip
            return
        if (attrs.get("n_items"), attrs.get("unit_size")) != (n, unit):
            store.backend.update_group_attrs(split, {"n_items": n, "unit_size": unit})
            out.rebuilt.append(f"split {split}: n_items {n}, unit_size {unit} (from its item table)")
        for name in sorted({f.array for f in votes if f.array}):
            _rebuild(store, split, name, ((n,), ITEM_DTYPES[name], unit, unit, ("item",), {"kind": "items"}), out)
        found = metadata_findings(store, [split])  # with the count trusted, its arrays can be judged
        if any(f.whole_split for f in found):
            out.cannot += [f.line() for f in found if f.whole_split]
            return
    n, unit = int(store.backend.group_attrs(split)["n_items"]), int(store.backend.group_attrs(split)["unit_size"])
    for name in sorted({f.array for f in found if f.array and not f.whole_split}):
        key = FeatureKey.maybe(name)
        if key is None:
            out.cannot.append(f"{split}/{name}: an imported or side array's metadata cannot be rebuilt from the store's records; "
                              "import it again (`diffprobe store import --overwrite`), or extract the split again")  # fmt: skip
            continue
        layout = _layout(store, split, name) or planned(split, name)
        if layout is None:
            out.cannot.append(f"{split}/{name}: its layout is neither recorded nor planned by the store's configuration")
            continue
        module = next((b.get("path") for b in store.attrs.get("block_table", []) if b.get("number") == key.block), str(key.block))
        dtype = str(store.attrs.get("identity", {}).get("dtype", "float16"))
        _rebuild(store, split, name, feature_array_args(n, unit, key, layout, dtype, str(module)), out)


def _layout(store: FeatureStore, split: str, name: str) -> ArrayLayout | None:
    """The layout the array's own metadata records, if it can still be read."""
    try:
        return ArrayLayout.from_attrs(store.backend.array_meta(split, name).attrs["layout"])
    except (StoreError, KeyError):
        return None


def _rebuild(store: FeatureStore, split: str, name: str, args: tuple, out: Mended) -> None:
    if store.backend.replace_metadata(split, name, *args):
        out.rebuilt.append(f"{split}/{name}: metadata {list(args[0])} {args[1]}, as extraction wrote it")
    else:
        out.cannot.append(f"{split}/{name}: a {store.format} store's metadata cannot be rewritten array by array; "
                          "export an undamaged copy, or extract the store again")  # fmt: skip
