"""From a feature store to probe inputs: keys, splits, label subsets, concatenation, streaming.

A :class:`Features` holds one split's rows for one or more store keys, concatenated column-wise as
float32 (N·K, D), item-major over the K noise draws (K = 1 unless extraction kept several draws):
training uses every draw as an extra sample, evaluation averages the predicted probabilities over
draws. Arrays larger than ``max_memory_gb`` stay lazy (dask, chunked along N) and the probes stream
them.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from diffprobe.errors import StoreKeyError
from diffprobe.probes.errors import LabelError, ProbeError

log = logging.getLogger(__name__)

Shape = tuple[int, int, int]
PoolSpec = int | None  # None = the full native map


@dataclass(frozen=True)
class KeyInfo:
    """One store array: its name and, for extracted arrays, (t, block, pool); None for imported ones."""

    name: str
    t: int | None = None
    block: int | None = None
    pool: int | None = None

    @property
    def pool_label(self) -> str:
        return "full" if self.pool is None else str(self.pool)

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.name, "t": self.t, "block": self.block, "pool": self.pool if self.t is not None else None}


@dataclass
class Features:
    """One split's features for ``keys``: X (N·K, D) float32 (numpy or dask), labels and item metadata."""

    split: str
    keys: tuple[KeyInfo, ...]
    X: Any
    y: np.ndarray
    ids: np.ndarray
    paths: np.ndarray | None
    valid: np.ndarray
    draws: int
    shapes: tuple[Shape, ...]

    @property
    def n_items(self) -> int:
        return int(self.y.shape[0])

    @property
    def lazy(self) -> bool:
        return not isinstance(self.X, np.ndarray)

    def rows(self, items: np.ndarray) -> np.ndarray:
        """Row indices of X for item indices ``items`` (every draw of each item, item-major)."""
        items = np.asarray(items, dtype=np.int64)
        return (items[:, None] * self.draws + np.arange(self.draws)).ravel()

    def labelled(self) -> np.ndarray:
        """Items that decoded and carry a label."""
        return np.flatnonzero(self.valid & (self.y >= 0))


# -- keys ------------------------------------------------------------------------------------------
def key_infos(store: Any, split: str) -> dict[str, KeyInfo]:
    """Every array of ``split`` by name; extracted ones carry (t, block, pool)."""
    _check_split(store, split)
    out = {name: KeyInfo(name) for name in store.keys(split)}
    for fk in store.feature_keys(split):
        out[str(fk)] = KeyInfo(str(fk), int(fk.t), int(fk.block), None if fk.pool is None else int(fk.pool))
    return out


def parse_pool(value: str | int | None) -> PoolSpec:
    """``"full"``/None → None; an int or digit string → that pool size."""
    if value is None or (isinstance(value, str) and value.lower() in ("full", "none")):
        return None
    try:
        p = int(value)
    except (TypeError, ValueError):
        raise ProbeError(f"expected a pool size (an integer) or 'full', got {value!r}") from None
    if p < 1:
        raise ProbeError(f"expected a pool size ≥ 1 or 'full', got {value!r}")
    return p


def resolve_keys(
    store: Any,
    split: str,
    t: Sequence[int] = (),
    block: Sequence[int] = (),
    pool: Sequence[PoolSpec] = (),
    names: Sequence[str] = (),
) -> list[KeyInfo]:
    """The arrays named by ``names`` plus every (t, block, pool) combination asked for.

    An empty ``t``/``block``/``pool`` is allowed when the store holds a single value of it.
    Raises :class:`StoreKeyError` naming what the store does have.
    """
    infos = key_infos(store, split)
    out = []
    for n in names:
        if n not in infos:
            raise StoreKeyError(f"unknown key {n!r} in split {split!r}; valid: {_preview(infos)}")
        out.append(infos[n])
    if not (t or block or pool):
        if not out:
            raise ProbeError("expected at least one key: give t, block and pool (or key names)")
        return out
    extracted = [k for k in infos.values() if k.t is not None]
    axes = {}
    for axis, wanted in (("t", list(t)), ("block", list(block)), ("pool", list(pool))):
        values: set[Any] = {getattr(k, axis) for k in extracted}
        have = sorted(values, key=lambda v: (v is None, v or 0))
        if not wanted:
            if len(have) != 1:
                shown = ", ".join("full" if v is None else str(v) for v in have) or "none"
                raise ProbeError(f"expected a {axis} (the store has several: {shown}); pass --{axis}")
            wanted = have
        axes[axis] = wanted
    by_triple = {(k.t, k.block, k.pool): k for k in extracted}
    for tt, bb, pp in itertools.product(axes["t"], axes["block"], axes["pool"]):
        if (tt, bb, pp) not in by_triple:
            raise StoreKeyError(
                f"unknown key t={tt}, block={bb}, pool={'full' if pp is None else pp} in split {split!r}; "
                f"valid: {_axes_summary(extracted)}"
            )
        out.append(by_triple[(tt, bb, pp)])
    return out


def _preview(infos: dict[str, KeyInfo], limit: int = 12) -> str:
    names = sorted(infos)
    more = f" … ({len(names)} in all)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more if names else "none"


def _axes_summary(extracted: Iterable[KeyInfo]) -> str:
    ks = list(extracted)
    if not ks:
        return "no extracted (t, block, pool) arrays"
    ts = sorted({k.t for k in ks if k.t is not None})
    bs = sorted({k.block for k in ks if k.block is not None})
    ps = sorted({k.pool_label for k in ks}, key=lambda s: (s == "full", int(s) if s.isdigit() else 0))
    return f"t ∈ {{{', '.join(map(str, ts))}}}, block ∈ {{{', '.join(map(str, bs))}}}, pool ∈ {{{', '.join(ps)}}}"


def _check_split(store: Any, split: str) -> None:
    if split not in store.splits:
        raise StoreKeyError(f"unknown split {split!r}; valid: {', '.join(store.splits) or 'none'}")


# -- loading ---------------------------------------------------------------------------------------
def load_features(
    store: Any, split: str, keys: Sequence[KeyInfo | str], *, lazy: bool | None = None, max_memory_gb: float = 4.0
) -> Features:
    """Read and concatenate ``keys`` of ``split``.

    Args:
        keys: :class:`KeyInfo` or array names (all of one split, same N and number of draws).
        lazy: True keeps X as a dask array; None decides by size (float32 bytes > ``max_memory_gb``).
    Returns:
        :class:`Features` with X (N·K, Σ C·p·p).
    """
    infos = key_infos(store, split)
    ks = []
    for k in keys:
        name = k.name if isinstance(k, KeyInfo) else str(k)
        if name not in infos:
            raise StoreKeyError(f"unknown key {name!r} in split {split!r}; valid: {_preview(infos)}")
        ks.append(infos[name])
    if not ks:
        raise ProbeError("expected at least one key to load, got none")
    y = np.asarray(store.labels(split), dtype=np.int64)
    views = [store.read(split, k.name, lazy=True) for k in ks]
    n, draws, shapes = _layout(ks, views, y.shape[0])
    total = sum(int(np.prod(s)) for s in shapes)
    nbytes = n * draws * total * 4
    if lazy is None:
        lazy = nbytes > max_memory_gb * 2**30
    if lazy:
        import dask.array as da

        X = da.concatenate([v.reshape(n * draws, -1).astype(np.float32) for v in views], axis=1)
    else:
        X = np.empty((n * draws, total), dtype=np.float32)
        col = 0
        for k, s in zip(ks, shapes):
            width = int(np.prod(s))
            X[:, col : col + width] = np.asarray(store.read(split, k.name)).reshape(n * draws, width)
            col += width
    valid = np.asarray(store.valid(split), dtype=bool).copy()
    if not lazy:
        bad = np.isnan(X).reshape(n, -1).any(axis=1) & valid
        if bad.any():
            log.warning("split %r: %d items have NaN features although marked valid; they are skipped", split, bad.sum())
            valid &= ~bad
    paths = np.asarray(store.paths(split)) if hasattr(store, "paths") else None
    return Features(split, tuple(ks), X, y, np.asarray(store.ids(split)), paths, valid, draws, shapes)


def _layout(ks: Sequence[KeyInfo], views: Sequence[Any], n_labels: int) -> tuple[int, int, tuple[Shape, ...]]:
    """(N, K draws, per-key (C, H, W)) after checking that all keys agree with each other and the labels."""
    ns, ds, shapes = [], [], []
    for k, v in zip(ks, views):
        sh = tuple(int(s) for s in v.shape)
        if len(sh) == 4:
            ns.append(sh[0])
            ds.append(1)
            shapes.append(sh[1:])
        elif len(sh) == 5:
            ns.append(sh[0])
            ds.append(sh[1])
            shapes.append(sh[2:])
        else:
            raise ProbeError(f"expected key {k.name!r} to be (N, C, H, W) or (N, K, C, H, W), got shape {sh}")
    if len(set(ns)) > 1 or ns[0] != n_labels:
        counts = ", ".join(f"{k.name}: {n}" for k, n in zip(ks, ns))
        raise ProbeError(f"mismatched item counts: expected every key to have {n_labels} items (as the labels), got {counts}")
    if len(set(ds)) > 1:
        counts = ", ".join(f"{k.name}: {d}" for k, d in zip(ks, ds))
        raise ProbeError(f"expected every key to have the same number of noise draws, got {counts}")
    return ns[0], ds[0], tuple(shapes)  # type: ignore[return-value]


# -- splits ----------------------------------------------------------------------------------------
EVAL_SPLIT_PREFERENCE = ("val", "validation", "test")


def default_splits(splits: Sequence[str], train_split: str | None, eval_split: str | None) -> tuple[str, str | None]:
    """(train split, eval split or None for a hold-out within the train split).

    Defaults: train → "train" if present, else the first split; eval → the first of val/validation/test
    that is not the train split; None (a hold-out within the train split) when there is no such split
    or eval == train.
    """
    for s in (train_split, eval_split):
        if s is not None and s not in splits:
            raise StoreKeyError(f"unknown split {s!r}; valid: {', '.join(splits) or 'none'}")
    if not splits:
        raise ProbeError("the store has no splits")
    train = train_split or ("train" if "train" in splits else splits[0])
    if eval_split is None:
        eval_split = next((s for s in EVAL_SPLIT_PREFERENCE if s in splits and s != train), None)
    return train, (None if eval_split == train else eval_split)


def require_labels(features: Features, role: str) -> np.ndarray:
    """Labelled, valid items of ``features``; a clear error when there are none."""
    items = features.labelled()
    if items.size == 0:
        hint = (
            "probes need labelled training items"
            if role == "train"
            else "choose another --eval-split, or use `diffprobe probe predict` for unlabelled data"
        )
        raise LabelError(f"split {features.split!r} has no labels ({role} split); {hint}")
    return items
