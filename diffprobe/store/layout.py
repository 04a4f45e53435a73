"""Store layout: array names ↔ (t, block, pool) keys, schema constants, unit planning, hashing.

A store holds one group per split. Each group has the item table (``item_id``, ``path``, ``label``,
``valid``; all (N,)) and one array per feature key, named ``t{t:04d}_b{block:02d}_p{pool}`` (or
``…_full`` for the native map), shaped (N, C, p, p) — with a (V,) view axis after N when V > 1
views were extracted, then a (K,) draw axis when K > 1 noise draws were kept: (N, V, K, C, p, p).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any, Protocol

from diffprobe.errors import ConfigError, StoreKeyError

SCHEMA_VERSION = 1
ROOT_ATTR = "diffprobe"
ITEM_ARRAYS = ("item_id", "path", "label", "valid")
#: the dtype of each item-table array (as :meth:`~diffprobe.store.backend.Backend.create_array` takes it)
ITEM_DTYPES = {"item_id": "str", "path": "str", "label": "int64", "valid": "bool"}
#: the item-aligned (N, S, S) uint8 segmentation masks of a split, when its data has them
MASK_ARRAY = "mask"
#: the (N, V, P) float64 parameters of each item's views, when V > 1 views were extracted
VIEW_PARAMS_ARRAY = "view_params"
#: per-split arrays that are neither the item table nor features
SIDE_ARRAYS = (MASK_ARRAY, VIEW_PARAMS_ARRAY)
#: the mask value that no loss or metric counts
IGNORE_INDEX = 255
PROGRESS_GROUP = "_progress"
_KEY_RE = re.compile(r"^t(\d+)_b(\d+)_(?:p(\d+)|full)$")
#: How the full native map is written wherever a pool size is expected (options, names, tables).
FULL = "full"


class ItemColumn(Protocol):
    """(N,) values of an item-table array as written: anything numpy reads row slices of (a list, a
    numpy array, a column of an :class:`~diffprobe.extract.sources.item_table.ItemTable`)."""

    def __len__(self) -> int: ...
    def __getitem__(self, rows: slice, /) -> Any: ...


def parse_pool(value: str | int | None) -> int | None:
    """``"full"``/None → None (the native map); a positive integer (or its digits) → that pool size.

    Raises:
        ConfigError: anything else.
    """
    if value is None or (isinstance(value, str) and value.strip().lower() == FULL):
        return None
    try:
        p = int(value)
    except (TypeError, ValueError):
        p = 0
    if isinstance(value, bool) or p <= 0 or (isinstance(value, float) and value != p):
        raise ConfigError(f"expected a pool size (a positive integer) or '{FULL}', got {value!r}")
    return p


def pool_label(pool: int | None) -> str:
    """The pool as users write it: ``"2"``, or ``"full"`` for the native map."""
    return FULL if pool is None else str(pool)


def pool_order(pool: int | None) -> int:
    """Sort key of a pool size: ascending sizes, the native map last."""
    return 1 << 30 if pool is None else pool


@dataclass(frozen=True)
class FeatureKey:
    """One extracted array: timestep t, paper block number, pool size p (None = native map).

    Its name in a store is ``t{t:04d}_b{block:02d}_p{pool}`` (``…_full`` for the native map);
    :meth:`parse` reads a name back. Keys sort by (t, block, pool), the native map last.
    """

    t: int
    block: int
    pool: int | None

    def __str__(self) -> str:
        pool = FULL if self.pool is None else f"p{self.pool}"
        return f"t{self.t:04d}_b{self.block:02d}_{pool}"

    @property
    def name(self) -> str:
        return str(self)

    @property
    def pool_label(self) -> str:
        return pool_label(self.pool)

    def sort_key(self) -> tuple[int, int, int]:
        return (self.t, self.block, pool_order(self.pool))

    def __lt__(self, other: FeatureKey) -> bool:
        return self.sort_key() < other.sort_key()

    def to_dict(self) -> dict[str, Any]:
        return {"t": self.t, "block": self.block, "pool": self.pool}

    @classmethod
    def of(cls, t: int | str, block: int | str, pool: str | int | None) -> FeatureKey:
        """A key from loosely typed parts (``of("90", 24, "full")``)."""
        return cls(int(t), int(block), parse_pool(pool))

    @classmethod
    def parse(cls, name: str) -> FeatureKey:
        """``"t0090_b24_p2"`` → FeatureKey(90, 24, 2); raises StoreKeyError for other names."""
        m = _KEY_RE.match(name)
        if not m:
            raise StoreKeyError(f"{name!r} is not a feature key; expected e.g. t0090_b24_p2 or t0090_b24_full")
        return cls(int(m.group(1)), int(m.group(2)), int(m.group(3)) if m.group(3) else None)

    @classmethod
    def is_key(cls, name: str) -> bool:
        return bool(_KEY_RE.match(name))

    @classmethod
    def maybe(cls, name: str) -> FeatureKey | None:
        """The key an array name encodes, or None for other arrays (imported ones)."""
        return cls.parse(name) if cls.is_key(name) else None


def array_name(key: str | int | FeatureKey, block: int | str | None = None, pool: str | int | None = None) -> str:
    """The array name that ``read(split, key)`` / ``read(split, t, block, pool)`` refers to."""
    if block is None:
        if isinstance(key, (str, FeatureKey)):
            return str(key)
        raise StoreKeyError("read(split, t, block, pool) needs a block (or pass an array name)")
    if isinstance(key, FeatureKey):
        raise StoreKeyError(f"read(split, key) takes a FeatureKey alone, got {key} with block={block!r}")
    return str(FeatureKey.of(key, block, pool))


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def config_hash(identity: dict[str, Any]) -> str:
    """Short stable hash of the fields that determine stored values."""
    return hashlib.sha256(canonical_json(identity).encode()).hexdigest()[:16]


def plan_units(n_items: int, unit_size: int) -> list[tuple[int, int]]:
    """Shard-aligned item ranges [start, stop) covering 0..n_items."""
    return [(s, min(s + unit_size, n_items)) for s in range(0, n_items, unit_size)]


def auto_unit_size(bytes_per_item: int, n_items: int, budget: int = 256 << 20) -> int:
    """Items per work unit (= per shard): a power of two in [16, 4096] whose buffers fit ``budget``.

    A unit's pooled features for every key are held in host memory until its shards are written,
    so the budget bounds memory; large units mean few files and few markers.
    """
    size = 4096
    while size > 16 and size * bytes_per_item > budget:
        size //= 2
    while size > 16 and size // 2 >= n_items:
        size //= 2
    return size


#: Shard files a split may hold (one per array per work unit): :func:`few_files_unit_size` grows units
#: until a split stays under it (1.28M items × 100 keys: units of ≥ 2,048 items).
MAX_FILES = 100_000
#: …as long as one array's shard (its rows of one unit) stays within this many bytes.
MAX_SHARD_BYTES = 256 << 20
#: Host memory a unit's buffers (every key) hold at once; a larger unit is filled a piece of this
#: size at a time (:class:`~diffprobe.store.progress.UnitBuffer`), the full pieces put aside in a
#: temporary file inside the store until the unit's end (:mod:`~diffprobe.store.spill`).
MAX_UNIT_BYTES = 2 << 30
#: …and a unit's rows of every key at most this many bytes: the temporary disk a unit may take
#: while it is filled (and the work a stopped run redoes).
MAX_SPILL_BYTES = 32 << 30


def few_files_unit_size(size: int, item_bytes: int, array_bytes: int, n_items: int, n_arrays: int,
                        store_items: int | None = None) -> int:  # fmt: skip
    """``size`` doubled until a split of ``n_items`` items × ``n_arrays`` arrays holds at most its
    share of :data:`MAX_FILES` shard files — ``n_items / store_items`` of them, so that the whole
    store (every split, ``store_items`` items in all) stays under it — as long as the largest array's
    shard (``array_bytes`` per item) stays within :data:`MAX_SHARD_BYTES`, the unit's rows of every
    key (``item_bytes`` per item) within :data:`MAX_SPILL_BYTES`, and a unit is no larger than the
    split needs."""
    total = max(n_items, store_items or 0)
    while (total * n_arrays > MAX_FILES * size and 2 * size * array_bytes <= MAX_SHARD_BYTES
           and 2 * size * item_bytes <= MAX_SPILL_BYTES and size < n_items):  # fmt: skip
        size *= 2
    return size


def chunk_items(unit_size: int, bytes_per_item: int, target: int = 1 << 20) -> int:
    """Items per chunk inside a shard: a divisor of ``unit_size`` near ``target`` bytes."""
    want = max(1, target // max(bytes_per_item, 1))
    return max(d for d in range(1, min(unit_size, want) + 1) if unit_size % d == 0)
