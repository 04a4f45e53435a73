"""Selecting stored arrays: block specs as users write them, and what a split holds, in words.

Shared by everything that picks arrays out of a :class:`~diffprobe.store.reader.StoreReader`
(probes, sweeps, CKA), so a block is named the same way there as at extraction: by paper number or
by module path (``output_blocks.4``, ``middle``), which stores record per array.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from diffprobe.errors import StoreKeyError
from diffprobe.store.layout import FeatureKey, pool_label, pool_order
from diffprobe.store.reader import StoreReader

BlockSpec = int | str


def block_paths(store: StoreReader, split: str) -> dict[str, int]:
    """{module path: paper block number} of the split's extracted arrays (``middle`` included)."""
    out: dict[str, int] = {}
    for k in store.feature_keys(split):
        module = store.array_info(split, k.name)[2].get("module")
        if module:
            out[str(module)] = k.block
    if "middle_block" in out:
        out["middle"] = out["middle_block"]
    return out


def resolve_block_specs(store: StoreReader, split: str, specs: Iterable[BlockSpec]) -> list[int]:
    """Paper numbers of ``specs`` (numbers, digit strings or module paths), in the order given."""
    out: list[int] = []
    paths: dict[str, int] | None = None
    for spec in specs:
        if isinstance(spec, int) or str(spec).strip().isdigit():
            n = int(spec)
        else:
            paths = block_paths(store, split) if paths is None else paths
            name = str(spec).strip()
            if name not in paths:
                known = ", ".join(f"{p} ({b})" for p, b in sorted(paths.items(), key=lambda pb: pb[1])) or "none recorded"
                raise StoreKeyError(f"expected a block number or a stored block's module path, got {name!r}; stored: {known}")
            n = paths[name]
        if n not in out:
            out.append(n)
    return out


def preview(names: Iterable[str], limit: int = 12) -> str:
    """``a, b, c … (40 in all)``: array names for an error message."""
    names = sorted(names)
    more = f" … ({len(names)} in all)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more if names else "none"


def axes_summary(keys: Sequence[FeatureKey]) -> str:
    """``t ∈ {50, 150}, block ∈ {10, 13}, pool ∈ {1, 2, full}``: what a split holds."""
    if not keys:
        return "no extracted (t, block, pool) arrays"
    ts = sorted({k.t for k in keys})
    bs = sorted({k.block for k in keys})
    ps = [pool_label(p) for p in sorted({k.pool for k in keys}, key=pool_order)]
    return f"t ∈ {{{', '.join(map(str, ts))}}}, block ∈ {{{', '.join(map(str, bs))}}}, pool ∈ {{{', '.join(ps)}}}"
