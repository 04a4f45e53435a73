"""The arithmetic of benchmarks/scale.py, apart from any measuring: growth exponents, a store's files
and metadata on disk, and the files the planner would make for a store of any size.

A Zarr store holds, per split, one shard file per array per work unit (every feature array and the
item table: ``ITEM_ARRAYS``), one done marker per unit, and a ``zarr.json`` per array and group; the
unit size comes from :func:`~diffprobe.store.layout.auto_unit_size` (a power of two ≤ 4,096 whose
buffers — every key of the run at once — fit 256 MiB), grown by
:func:`~diffprobe.store.layout.few_files_unit_size` until the store holds at most 100,000 shard files
(each split its share by items), while one array's shard stays within 256 MiB and a unit's rows of
every key within 32 GiB (a unit whose rows exceed 2 GiB is filled a piece at a time, its full pieces
put aside in a temporary file in the store until its end). The CPU's ~30 s cap on a unit's work is
left out: the projection is for GPU runs, where units are sized by memory.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from diffprobe.store.layout import ITEM_ARRAYS, auto_unit_size, few_files_unit_size, plan_units

#: An exponent above this between two sizes is super-linear in items.
SUPERLINEAR = 1.1
#: A peak RSS that grows by more than this share between two sizes grows with items.
RSS_GROWTH = 0.20


def growth_exponent(n1: float, t1: float, n2: float, t2: float) -> float:
    """log(t2/t1) / log(n2/n1): 1.0 is linear in items, 0 flat, 2 quadratic."""
    if n1 <= 0 or n2 <= 0 or n1 == n2 or t1 <= 0 or t2 <= 0:
        raise ValueError(f"expected two different positive sizes and positive times, got n {n1}, {n2} and t {t1}, {t2}")
    return math.log(t2 / t1) / math.log(n2 / n1)


@dataclass(frozen=True)
class Footprint:
    """A store on disk: every file, the metadata files (``zarr.json`` and done markers) and their bytes."""

    files: int
    bytes: int
    metadata_files: int
    metadata_bytes: int


def footprint(store: Path) -> Footprint:
    """Count ``store``'s files; metadata = ``zarr.json`` files + the done markers under ``_progress``."""
    files = size = meta = meta_size = 0
    for p in store.rglob("*"):
        if not p.is_file():
            continue
        n = p.stat().st_size
        files, size = files + 1, size + n
        if p.name == "zarr.json" or (p.suffix == ".json" and "_progress" in p.relative_to(store).parts):
            meta, meta_size = meta + 1, meta_size + n
    return Footprint(files, size, meta, meta_size)


@dataclass(frozen=True)
class Projection:
    """The files of one split of a new Zarr store, as the planner would lay it out."""

    items: int
    keys: int
    unit_size: int
    units: int
    shards: int
    markers: int
    metadata: int

    @property
    def files(self) -> int:
        return self.shards + self.markers + self.metadata


def project_split(items: int, key_bytes: Sequence[int], store_items: int | None = None) -> Projection:
    """Files of a split of ``items`` items whose keys take ``key_bytes`` bytes per item each (the
    planner's ``item_bytes`` is their sum): one shard per array per unit, a marker per unit, a
    ``zarr.json`` per array and one for the split's group and its progress folder."""
    arrays = len(key_bytes) + len(ITEM_ARRAYS)
    unit = few_files_unit_size(
        auto_unit_size(max(sum(key_bytes), 1), items), sum(key_bytes), max(key_bytes, default=0), items, arrays, store_items
    )
    units = len(plan_units(items, unit))
    return Projection(items, len(key_bytes), unit, units, units * arrays, units, arrays + 1)


def project_store(splits: dict[str, int], key_bytes: Sequence[int]) -> int:
    """Files of a whole store: its splits, plus the root's and ``_progress``'s ``zarr.json``."""
    total = sum(splits.values())
    return 2 + sum(project_split(n, key_bytes, total).files for n in splits.values())
