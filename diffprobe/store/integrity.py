"""Stores that cannot rot silently: digests of what each unit wrote, and a deep check of every chunk.

Two layers catch two kinds of damage:

- **Chunk checksums** (crc32c in every Zarr chunk's codec pipeline, fletcher32 in HDF5): reading a
  chunk whose bytes changed fails instead of returning wrong numbers.
- **Digests** (BLAKE2b-128 of the values, recorded when they are written: in each unit's done
  marker for the unit's rows of every array, in the split's attributes for the item table): a
  chunk that went missing (it reads as NaN fill) or was replaced by another valid chunk has the
  wrong digest.

:func:`deep_verify` reads every chunk of every array and checks both; the damaged units it lists
are what ``diffprobe store repair`` recomputes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from diffprobe.errors import StoreCorruptError
from diffprobe.store.digests import Digest, digest
from diffprobe.store.layout import ITEM_ARRAYS, SIDE_ARRAYS, FeatureKey
from diffprobe.store.metadata import Finding, metadata_findings
from diffprobe.store.store import FeatureStore, table_windows

#: Item-table arrays written once when the split is created (``valid`` is written by every unit).
TABLE_ARRAYS = tuple(a for a in ITEM_ARRAYS if a != "valid")


@dataclass(frozen=True)
class Damage:
    """One unit of one array whose stored rows are not what was written."""

    split: str
    array: str
    unit: int
    start: int
    stop: int
    kind: str  # "checksum" (a chunk failed to decode) or "digest" (the values changed or went missing)
    detail: str
    items: tuple[str, ...] = ()

    def line(self) -> str:
        shown = ", ".join(self.items[:3]) + (" …" if len(self.items) > 3 else "")
        what = "chunk checksum failed" if self.kind == "checksum" else "values differ from what was written"
        return (f"corrupt: {self.split}/{self.array} unit {self.unit} (items {self.start}–{self.stop - 1}: {shown}): "
                f"{what} ({self.detail})")  # fmt: skip


@dataclass
class DeepReport:
    """What :func:`deep_verify` found: damaged units, and what could not be checked."""

    damage: list[Damage] = field(default_factory=list)
    #: arrays whose valid, finished rows hold NaN/Inf as written (e.g. fp16 overflow): intact, but unusable
    bad_values: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    chunks_read: int = 0
    #: damaged metadata (see :mod:`~diffprobe.store.metadata`): those splits and arrays are not read
    metadata: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.damage and not self.bad_values and not self.metadata

    def units(self) -> dict[str, set[int]]:
        """{split: damaged unit numbers}."""
        out: dict[str, set[int]] = {}
        for d in self.damage:
            out.setdefault(d.split, set()).add(d.unit)
        return out


def _read(store: FeatureStore, split: str, name: str, rows: slice) -> tuple[np.ndarray | None, str]:
    try:
        return store.backend.read_rows(split, name, rows), ""
    except StoreCorruptError as e:  # a chunk fails its checksum (crc32c, fletcher32) or to decompress
        cause = e.__cause__ or e
        return None, f"{type(cause).__name__}: {str(cause).splitlines()[0][:160]}"
    except (ValueError, OSError, RuntimeError) as e:  # unreadable in some other way
        return None, f"{type(e).__name__}: {str(e).splitlines()[0][:160]}"


def deep_verify(store: FeatureStore, splits: Iterable[str] | None = None) -> DeepReport:
    """Read every chunk of every array, check chunk checksums and recorded digests, and count rows
    of valid items that hold NaN/Inf.

    Units not marked done are skipped (plain ``verify`` reports them); arrays of stores written
    before digests were recorded are checked for readable chunks only (noted in the report).
    """
    rep = DeepReport()
    chosen = list(splits or store.splits)
    rep.metadata = metadata_findings(store, chosen)
    skip = {(f.split, f.array) for f in rep.metadata} | {(f.split, None) for f in rep.metadata if f.whole_split}
    for split in chosen:
        if (split, None) in skip:
            continue  # its item count is not trusted: nothing of it is read
        ids = _Ids(store, split, (split, "item_id") in skip)
        marks = store.markers(split)
        valid, _ = _read(store, split, "valid", slice(None)) if (split, "valid") not in skip else (None, "")  # damage: reported below
        nonfinite: dict[str, list[int]] = {}  # array → [rows with NaN, rows with Inf]
        table = store.backend.group_attrs(split).get("digests", {})
        for name in TABLE_ARRAYS:
            if (split, name) in skip:
                continue
            err, ok = _check_table(store, split, name, table.get(name))
            rep.chunks_read += 1
            if err or not ok:
                n = store.n_items(split)
                rep.damage.append(Damage(split, name, -1, 0, n, "checksum" if err else "digest", err or "item table", ids[0:3]))
        if not table:
            rep.notes.append(f"{split}: the item table has no recorded digests (a store made before they were recorded)")
        undigested: set[str] = set()
        side = [a for a in SIDE_ARRAYS if a in store.backend.arrays(split)]  # masks, view parameters: written whole
        for name in [*side, *store.keys(split), "valid"]:
            if (split, name) in skip:
                continue
            extracted = name == "valid" or FeatureKey.is_key(name)
            if not extracted:  # an imported or side array: written whole, its digest in its attributes
                values, err = _read(store, split, name, slice(None))
                rep.chunks_read += 1
                recorded = store.backend.array_info(split, name)[2].get("digest")
                if err or (recorded is not None and digest(values) != recorded):  # type: ignore[arg-type]
                    n = store.n_items(split)
                    what = "imported array" if name not in SIDE_ARRAYS else f"{name}, written when the split was made"
                    rep.damage.append(Damage(split, name, -1, 0, n, "checksum" if err else "digest", err or what, ids[0:3]))
                elif recorded is None:
                    undigested.add(name)
                continue
            for u, (a, b) in enumerate(store.units(split)):
                m = marks.get(u)
                if m is None or (name != "valid" and name not in m.get("keys", ())):
                    continue
                values, err = _read(store, split, name, slice(a, b))
                rep.chunks_read += 1
                recorded = m.get("digests", {}).get(name)
                if err:
                    rep.damage.append(Damage(split, name, u, a, b, "checksum", err, ids[a:b]))
                    continue
                if recorded is None:
                    undigested.add(name)
                elif digest(values) != recorded:  # type: ignore[arg-type]
                    rep.damage.append(Damage(split, name, u, a, b, "digest", f"recorded {recorded[:12]}…", ids[a:b]))
                    continue
                if valid is not None and name != "valid":  # intact as written: are the values usable?
                    _count_nonfinite(values[valid[a:b].astype(bool)], nonfinite.setdefault(name, [0, 0]))  # type: ignore[index]
        rep.bad_values += [f"{split}/{name}: {n_nan} rows with NaN, {n_inf} rows with Inf among valid, finished items"
                           for name, (n_nan, n_inf) in nonfinite.items() if n_nan or n_inf]  # fmt: skip
        if undigested:
            rep.notes.append(f"{split}: no digests recorded for {len(undigested)} array(s) (imported, or written before "
                             "digests were recorded): only their chunks' readability was checked")  # fmt: skip
    return rep


class _Ids:
    """A split's item ids, read a window at a time when a damage report names them (never held whole)."""

    def __init__(self, store: FeatureStore, split: str, damaged: bool) -> None:
        self.store, self.split, self.damaged = store, split, damaged

    def __getitem__(self, rows: slice) -> tuple[str, ...]:
        if not self.damaged:
            values, err = _read(self.store, self.split, "item_id", rows)
            if values is not None:
                return tuple(map(str, values.tolist()))
        lo, hi, _ = rows.indices(self.store.n_items(self.split))
        return ("",) * max(0, hi - lo)


def _check_table(store: FeatureStore, split: str, name: str, recorded: str | None) -> tuple[str, bool]:
    """(read error or "", whether the digest matches ``recorded``) of an item-table array, read
    :func:`~diffprobe.store.store.table_windows` (whole units) at a time."""
    n = store.n_items(split)
    _, dtype, _ = store.backend.array_info(split, name)
    running = Digest((n,), np.dtype(str) if dtype.kind in "OT" else dtype)
    for lo, hi in table_windows(n, store.unit_size(split)):
        values, err = _read(store, split, name, slice(lo, hi))
        if err:
            return err, False
        running.add(values)  # type: ignore[arg-type]
    return "", recorded is None or running.hexdigest() == recorded


def _count_nonfinite(rows: np.ndarray, counts: list[int]) -> None:
    """Add the number of rows (axis 0) holding a NaN, and holding an Inf, to ``counts``."""
    if rows.size and rows.dtype.kind == "f":
        axes = tuple(range(1, rows.ndim))
        counts[0] += int(np.isnan(rows).any(axis=axes).sum())
        counts[1] += int(np.isinf(rows).any(axis=axes).sum())


def checksum_summary(store: FeatureStore, skip: set[tuple[str, str | None]] = frozenset()) -> dict[str, Any]:  # type: ignore[assignment]
    """{"checksums": kind or None, "arrays_without": n}: whether the store's chunks carry checksums
    (``skip``: (split, array) pairs whose metadata is damaged; (split, None) skips a whole split)."""
    kinds: set[str] = set()
    without = 0
    for split in store.splits:
        for name in [*store.backend.arrays(split)]:
            if (split, name) in skip or (split, None) in skip:
                continue
            kind = store.backend.chunk_checksum(split, name)
            if kind:
                kinds.add(kind)
            else:
                without += 1
    return {"checksums": ", ".join(sorted(kinds)) or None, "arrays_without": without}
