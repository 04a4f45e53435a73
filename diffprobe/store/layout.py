"""Store layout: array names ↔ (t, block, pool) keys, schema constants, unit planning, hashing.

A store holds one group per split. Each group has the item table (``item_id``, ``path``, ``label``,
``valid``; all (N,)) and one array per feature key, named ``t{t:04d}_b{block:02d}_p{pool}`` (or
``…_full`` for the native map), shaped (N, C, p, p) — or (N, K, C, p, p) with K noise draws kept.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from diffprobe.errors import StoreKeyError

SCHEMA_VERSION = 1
ROOT_ATTR = "diffprobe"
ITEM_ARRAYS = ("item_id", "path", "label", "valid")
PROGRESS_GROUP = "_progress"
_KEY_RE = re.compile(r"^t(\d+)_b(\d+)_(?:p(\d+)|full)$")


@dataclass(frozen=True, order=True)
class FeatureKey:
    """One extracted array: timestep t, paper block number, pool size p (None = native map)."""

    t: int
    block: int
    pool: int | None

    def __str__(self) -> str:
        pool = "full" if self.pool is None else f"p{self.pool}"
        return f"t{self.t:04d}_b{self.block:02d}_{pool}"

    @property
    def name(self) -> str:
        return str(self)

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


def pool_label(pool: int | None) -> str:
    return "full" if pool is None else str(pool)


def parse_pool(value: str | int | None) -> int | None:
    """``"full"``/None → None (native map), a positive integer → that size."""
    if value is None or (isinstance(value, str) and value.strip().lower() == "full"):
        return None
    try:
        p = int(value)
    except (TypeError, ValueError):
        raise StoreKeyError(f"pool must be a positive integer or 'full', got {value!r}") from None
    if p <= 0:
        raise StoreKeyError(f"pool must be a positive integer or 'full', got {value!r}")
    return p


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


def chunk_items(unit_size: int, bytes_per_item: int, target: int = 1 << 20) -> int:
    """Items per chunk inside a shard: a divisor of ``unit_size`` near ``target`` bytes."""
    want = max(1, target // max(bytes_per_item, 1))
    return max(d for d in range(1, min(unit_size, want) + 1) if unit_size % d == 0)
