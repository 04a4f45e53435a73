"""Which arrays of a split to read: one :class:`KeySelection`, resolved by one function.

Every reader of stores — probes, dense probes, sweeps, CKA, DifFeed's cached pass — says what it
wants as a :class:`KeySelection` and gets the arrays from :func:`resolve_selection`:

- **names**: array names (imported ones too) or shell patterns (``t0090_*_p1``), read as given.
- **t, blocks, pools**: the (t, block, pool) axes of extracted arrays. Each is a tuple of values,
  or ``()`` — *the split's only stored value* (an error naming the flag when it has several) — or
  :data:`ALL` — *every stored value* (what a sweep or a CKA matrix runs over, spelled explicitly).
  Blocks are paper numbers or module paths, resolved against the block table the store records
  (``diffprobe blocks MODEL`` prints it); pools are sizes, None meaning the native map.
- Every value given must be stored. When no axis is :data:`ALL`, every combination of the values
  must be stored (a probe concatenates them); with an :data:`ALL` axis the stored keys that match
  are taken, in (t, block, pool) order.
"""

from __future__ import annotations

import fnmatch
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from diffprobe.blocks import BlockInfo, BlockSpec, resolve_blocks
from diffprobe.errors import BlockError, StoreKeyError
from diffprobe.store.layout import FeatureKey, parse_pool, pool_label, pool_order
from diffprobe.store.reader import StoreReader

#: every stored value of an axis (a sweep's default; a CKA matrix's varied axis)
ALL: Final = "all"
All = Literal["all"]
_AXES = ("t", "blocks", "pools")
_FLAG = {"t": "--t", "blocks": "--blocks", "pools": "--pool"}
_FIELD = {"t": "t", "blocks": "block", "pools": "pool"}


@dataclass(frozen=True)
class KeyInfo:
    """One store array: its name, and its :class:`FeatureKey` for extracted arrays (None for imported ones)."""

    name: str
    key: FeatureKey | None = None

    @classmethod
    def of(cls, name: str) -> KeyInfo:
        return cls(name, FeatureKey.maybe(name))

    def to_dict(self) -> dict[str, Any]:
        k = self.key
        return {"key": self.name, "t": k.t if k else None, "block": k.block if k else None, "pool": k.pool if k else None}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> KeyInfo:
        """Inverse of :meth:`to_dict` (saved probes)."""
        pool = d.get("pool")
        key = FeatureKey(int(d["t"]), int(d["block"]), None if pool in (None, "full") else int(pool)) if d.get("t") is not None else None
        return cls(d["key"], key)


def _axis(value: Any, what: str) -> tuple[Any, ...] | All:
    if value == ALL:
        return ALL
    if value is None or isinstance(value, (int, str)):
        value = (value,)
    out = tuple(value)
    if ALL in out:
        raise StoreKeyError(f"expected {what} values or {ALL!r} alone, got {out}")
    return out


@dataclass(frozen=True)
class KeySelection:
    """Which arrays to read (see the module docstring for the meaning of ``()`` and :data:`ALL`).

    Attributes:
        t: timesteps (ints). blocks: paper numbers or module paths. pools: sizes, None = the native map
            (the text ``"full"`` is read once, here). names: array names or shell patterns.
    """

    t: tuple[int, ...] | All = ()
    blocks: tuple[BlockSpec, ...] | All = ()
    pools: tuple[int | None, ...] | All = ()
    names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        t, blocks, pools = _axis(self.t, "t"), _axis(self.blocks, "block"), _axis(self.pools, "pool")
        if t != ALL and any(isinstance(v, bool) or not isinstance(v, int) for v in t):
            raise StoreKeyError(f"expected integer timesteps, got {t}")
        if pools != ALL:
            pools = tuple(p if p is None or (isinstance(p, int) and not isinstance(p, bool)) else parse_pool(p) for p in pools)
        names = (self.names,) if isinstance(self.names, str) else tuple(self.names)
        for name, value in (("t", t), ("blocks", blocks), ("pools", pools), ("names", names)):
            object.__setattr__(self, name, value)

    @classmethod
    def everything(cls) -> KeySelection:
        """Every extracted array of a split."""
        return cls(ALL, ALL, ALL)

    def fill(self, value: All | tuple[()] = ALL) -> KeySelection:
        """This selection with every axis left out (``()``) set to ``value`` (a sweep: :data:`ALL`)."""
        t, blocks, pools = (value if getattr(self, a) == () else getattr(self, a) for a in _AXES)
        return KeySelection(t, blocks, pools, self.names)

    def by_axes(self) -> bool:
        """Whether any (t, block, pool) axis is given (``()`` everywhere and names: names only)."""
        return not self.names or any(getattr(self, a) != () for a in _AXES)

    def to_dict(self) -> dict[str, Any]:
        def plain(v: Any) -> Any:
            return v if v == ALL else list(v)

        return {"t": plain(self.t), "blocks": plain(self.blocks), "pools": plain(self.pools), "names": list(self.names)}


# -- the block table a store records ---------------------------------------------------------------
def stored_block_table(store: StoreReader, split: str) -> list[BlockInfo]:
    """The model's block table as the store records it (``block_table``), or — stores written
    before it was recorded — the blocks its arrays record (module path, map shape)."""
    table = ((getattr(store, "attrs", None) or {}).get("block_table")) or []
    if table:
        return [BlockInfo(**b) for b in table]
    out: dict[int, BlockInfo] = {}
    for k in store.feature_keys(split):
        if k.block in out:
            continue
        module = str(store.array_info(split, k.name)[2].get("module") or k.block)
        out[k.block] = BlockInfo(k.block, module, 0, 0, 0, "middle" if module.startswith("middle") else "")
    return [out[b] for b in sorted(out)]


def resolve_stored_blocks(store: StoreReader, split: str, specs: Iterable[BlockSpec]) -> list[int]:
    """Paper numbers of ``specs`` (numbers, digit strings or module paths), in the order given,
    checked against what the split stores.

    Raises:
        StoreKeyError: a spec names no block of the model, or a block that is not stored (the
            message lists the stored blocks with their module paths).
    """
    specs = list(specs)
    if not specs:
        return []
    table = stored_block_table(store, split)
    stored = sorted({k.block for k in store.feature_keys(split)})
    paths = {b.number: b.path for b in table}
    listing = ", ".join(f"{b} ({paths[b]})" if paths.get(b, str(b)) != str(b) else str(b) for b in stored) or "none"
    recorded = bool((getattr(store, "attrs", None) or {}).get("block_table"))
    try:
        numbers = [
            int(s) if not recorded and (isinstance(s, int) or str(s).strip().isdigit()) else resolve_blocks([s], table)[0] for s in specs
        ]
    except BlockError as e:
        raise StoreKeyError(f"{e}; stored blocks: {listing}") from None
    missing = [n for n in numbers if n not in stored]
    if missing:
        raise StoreKeyError(f"block(s) {', '.join(map(str, missing))} are not stored in split {split!r}; stored blocks: {listing}")
    return list(dict.fromkeys(numbers))


# -- resolution -----------------------------------------------------------------------------------
def _check_split(store: StoreReader, split: str) -> None:
    if split not in store.splits:
        raise StoreKeyError(f"unknown split {split!r}; valid: {', '.join(store.splits) or 'none'}")


def _names(store: StoreReader, split: str, patterns: Sequence[str]) -> list[str]:
    have = list(store.keys(split))
    out: list[str] = []
    for p in patterns:
        hits = [n for n in have if fnmatch.fnmatchcase(n, p)] if any(c in p for c in "*?[") else ([p] if p in have else [])
        if not hits:
            raise StoreKeyError(f"unknown key {p!r} in split {split!r}; valid: {preview(have)}")
        out.extend(h for h in hits if h not in out)
    return out


def resolve_selection(store: StoreReader, split: str, sel: KeySelection) -> list[KeyInfo]:
    """The arrays ``sel`` names in ``split`` (see the module docstring), names first.

    Raises:
        StoreKeyError: an unknown split, name, block or value, or an axis left out that has several
            stored values (the message names the choices and the flag that picks one).
    """
    _check_split(store, split)
    out = [KeyInfo.of(n) for n in _names(store, split, sel.names)]
    if not sel.by_axes():
        return out
    extracted = store.feature_keys(split)
    if not extracted:
        raise StoreKeyError(f"expected key names (--key): split {split!r} has no (t, block, pool) arrays; valid: {preview(store.keys(split))}")
    given = {"t": sel.t, "blocks": sel.blocks, "pools": sel.pools}
    if given["blocks"] not in ((), ALL):
        given["blocks"] = tuple(resolve_stored_blocks(store, split, given["blocks"]))  # type: ignore[arg-type]
    values: dict[str, list[Any]] = {}
    several = []
    for axis in _AXES:
        have = sorted({getattr(k, _FIELD[axis]) for k in extracted}, key=pool_order if axis == "pools" else None)
        if given[axis] == ALL:
            values[axis] = have
        elif given[axis] == ():
            values[axis] = have
            if len(have) != 1:
                several.append((axis, ", ".join(map(pool_label, have)) if axis == "pools" else ", ".join(map(str, have))))
        else:
            values[axis] = list(dict.fromkeys(given[axis]))  # type: ignore[arg-type]
            absent = [v for v in values[axis] if v not in have]
            if absent:
                shown = ", ".join(map(pool_label, absent)) if axis == "pools" else ", ".join(map(str, absent))
                raise StoreKeyError(f"unknown {_FIELD[axis]} {shown} in split {split!r}; valid: {axes_summary(extracted)}")
    if several:
        axes = _and([f"a {_FIELD[a]}" for a, _ in several])
        flags = _and([_FLAG[a] for a, _ in several])
        shown = several[0][1] if len(several) == 1 else "; ".join(f"{_FIELD[a]}: {v}" for a, v in several)
        raise StoreKeyError(f"expected {axes} (the store has several: {shown}); pass {flags}")
    stored = set(extracted)
    if ALL in (sel.t, sel.blocks, sel.pools):
        chosen = [k for k in extracted if k.t in values["t"] and k.block in values["blocks"] and k.pool in values["pools"]]
        if not chosen:
            raise StoreKeyError(f"no stored key of split {split!r} matches t={values['t']}, blocks={values['blocks']}, "
                                f"pools={[pool_label(p) for p in values['pools']]}; the store has {axes_summary(extracted)}")  # fmt: skip
    else:
        chosen = [FeatureKey(t, b, p) for t, b, p in itertools.product(values["t"], values["blocks"], values["pools"])]
        for k in chosen:
            if k not in stored:
                raise StoreKeyError(f"unknown key t={k.t}, block={k.block}, pool={k.pool_label} in split {split!r}; "
                                    f"valid: {axes_summary(extracted)}")  # fmt: skip
    return out + [KeyInfo(k.name, k) for k in chosen if k.name not in {o.name for o in out}]


def _and(words: Sequence[str]) -> str:
    """["a", "b", "c"] → "a, b and c"."""
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"


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
