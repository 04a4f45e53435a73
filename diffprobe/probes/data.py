"""From a feature store to probe inputs: keys, splits, label subsets, concatenation, streaming.

A :class:`Features` holds one split's rows for one or more store keys, concatenated column-wise as
float32 (N·V·K, D), item-major over the V views (V > 1 when extraction cached augmented views, see
``StoreReader.views``) and, within a view, over the K noise draws (K > 1 when extraction kept several
draws): row (i·V + v)·K + k is item i, view v, draw k. Training uses every (view, draw) row of an item
as a sample (:meth:`Features.rows`); evaluation uses view 0 — the evaluation transform — only, and
averages the predicted probabilities over its draws (:meth:`Features.eval_rows`). Arrays larger than
``max_memory`` bytes stay lazy (dask, chunked along N) and the probes stream them.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from diffprobe.errors import StoreKeyError
from diffprobe.probes.errors import LabelError, ProbeError
from diffprobe.store.layout import FeatureKey, parse_pool, pool_label, pool_order
from diffprobe.store.reader import StoreReader, views_of
from diffprobe.store.select import BlockSpec, axes_summary, preview, resolve_block_specs

log = logging.getLogger(__name__)

Shape = tuple[int, int, int]
#: Probes load at most this many bytes of float32 features into memory unless told otherwise.
DEFAULT_MAX_MEMORY = 4 * 2**30


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
        return cls(d["key"], FeatureKey(int(d["t"]), int(d["block"]), d["pool"]) if d.get("t") is not None else None)


@dataclass
class Features:
    """One split's features for ``keys``: X (N·V·K, D) float32 (numpy or dask), labels and item metadata.

    ``views`` V and ``draws`` K: rows per item, view-major (see the module docstring); ``shapes``: each
    key's (C, H, W).
    """

    split: str
    keys: tuple[KeyInfo, ...]
    X: Any
    y: np.ndarray
    ids: np.ndarray
    paths: np.ndarray | None
    valid: np.ndarray
    draws: int
    shapes: tuple[Shape, ...]
    views: int = 1

    @property
    def n_items(self) -> int:
        return int(self.y.shape[0])

    @property
    def per_item(self) -> int:
        """Rows per item: V·K."""
        return self.views * self.draws

    @property
    def lazy(self) -> bool:
        return not isinstance(self.X, np.ndarray)

    def rows(self, items: np.ndarray) -> np.ndarray:
        """(len(items)·V·K,) rows of X of ``items``: every (view, draw) of each item, item-major — what training samples."""
        items = np.asarray(items, dtype=np.int64)
        return (items[:, None] * self.per_item + np.arange(self.per_item)).ravel()

    def eval_rows(self, items: np.ndarray) -> np.ndarray:
        """(len(items)·K,) rows of X of ``items``: view 0's K draws of each item, item-major — what evaluation reads."""
        items = np.asarray(items, dtype=np.int64)
        return (items[:, None] * self.per_item + np.arange(self.draws)).ravel()

    def labelled(self) -> np.ndarray:
        """Items that decoded and carry a label."""
        return np.flatnonzero(self.valid & (self.y >= 0))


# -- keys ------------------------------------------------------------------------------------------
def key_infos(store: StoreReader, split: str) -> dict[str, KeyInfo]:
    """Every array of ``split`` by name; extracted ones carry their :class:`FeatureKey`."""
    _check_split(store, split)
    return {name: KeyInfo.of(name) for name in store.keys(split)}


def resolve_keys(
    store: StoreReader,
    split: str,
    t: Sequence[int] = (),
    block: Sequence[BlockSpec] = (),
    pool: Sequence[int | None] = (),
    names: Sequence[str] = (),
) -> list[KeyInfo]:
    """The arrays named by ``names`` plus every (t, block, pool) combination asked for.

    Blocks are paper numbers or module paths. An empty ``t``/``block``/``pool`` means the store's
    only value of it, also when none of the three is given (and no ``names``): a store holding one
    extracted array needs no selection at all. Raises :class:`ProbeError` naming the choices when an
    axis left out has several values, :class:`StoreKeyError` naming what the store does have.
    """
    infos = key_infos(store, split)
    out = []
    for n in names:
        if n not in infos:
            raise StoreKeyError(f"unknown key {n!r} in split {split!r}; valid: {preview(infos)}")
        out.append(infos[n])
    if out and not (t or block or pool):
        return out
    extracted = [k.key for k in infos.values() if k.key is not None]
    if not extracted:
        raise ProbeError(
            f"expected key names (--key): split {split!r} has no (t, block, pool) arrays; valid: {preview(infos)}"
        )
    wanted: dict[str, list[Any]] = {
        "t": [int(v) for v in t], "block": resolve_block_specs(store, split, block), "pool": [parse_pool(p) for p in pool],
    }  # fmt: skip
    several = []
    for axis, values in wanted.items():
        if not values:
            have = sorted({getattr(k, axis) for k in extracted}, key=pool_order if axis == "pool" else None)
            wanted[axis] = have
            if len(have) != 1:
                several.append((axis, ", ".join(map(pool_label, have) if axis == "pool" else map(str, have))))
    if several:
        axes = _and([f"a {axis}" for axis, _ in several])
        flags = _and([f"--{'blocks' if axis == 'block' else axis}" for axis, _ in several])
        shown = several[0][1] if len(several) == 1 else "; ".join(f"{axis}: {values}" for axis, values in several)
        raise ProbeError(f"expected {axes} (the store has several: {shown}); pass {flags}")
    stored = set(extracted)
    for tt, bb, pp in itertools.product(wanted["t"], wanted["block"], wanted["pool"]):
        key = FeatureKey(tt, bb, pp)
        if key not in stored:
            raise StoreKeyError(
                f"unknown key t={tt}, block={bb}, pool={pool_label(pp)} in split {split!r}; valid: {axes_summary(extracted)}"
            )
        out.append(infos[key.name])
    return out


def _and(words: Sequence[str]) -> str:
    """["a", "b", "c"] → "a, b and c"."""
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"


def _check_split(store: StoreReader, split: str) -> None:
    if split not in store.splits:
        raise StoreKeyError(f"unknown split {split!r}; valid: {', '.join(store.splits) or 'none'}")


# -- loading ---------------------------------------------------------------------------------------
def load_features(
    store: StoreReader, split: str, keys: Sequence[KeyInfo | str], *, lazy: bool | None = None,
    max_memory: int = DEFAULT_MAX_MEMORY, first_view: bool = False,
) -> Features:
    """Read and concatenate ``keys`` of ``split``.

    Args:
        keys: :class:`KeyInfo` or array names (all of one split, same N and number of draws).
        lazy: True keeps X as a dask array; None decides by size (float32 bytes > ``max_memory``).
        first_view: read view 0 only (all that evaluation uses); the result then has ``views`` 1.
    Returns:
        :class:`Features` with X (N·V·K, Σ C·p·p), V = ``store.views`` (1 with ``first_view``).
    """
    infos = key_infos(store, split)
    ks = []
    for k in keys:
        name = k.name if isinstance(k, KeyInfo) else str(k)
        if name not in infos:
            raise StoreKeyError(f"unknown key {name!r} in split {split!r}; valid: {preview(infos)}")
        ks.append(infos[name])
    if not ks:
        raise ProbeError("expected at least one key to load, got none")
    y = np.asarray(store.labels(split), dtype=np.int64)
    arrays = [store.read(split, k.name, lazy=True) for k in ks]
    n, views, draws, shapes = _layout(ks, arrays, y.shape[0], views_of(store))
    axis = [_has_view_axis(k, views_of(store)) for k in ks]
    sliced = any(axis) and (first_view or views == 1)  # views == 1 here: imported keys combined with extracted ones
    if sliced:
        arrays, views = [a[:, 0] if v else a for a, v in zip(arrays, axis)], 1
    per_item = views * draws
    total = sum(int(np.prod(s)) for s in shapes)
    nbytes = n * per_item * total * 4
    if lazy is None:
        lazy = nbytes > max_memory
    if lazy:
        import dask.array as da

        X = da.concatenate([a.reshape(n * per_item, -1).astype(np.float32) for a in arrays], axis=1)
    else:
        X = np.empty((n * per_item, total), dtype=np.float32)
        col = 0
        for k, a, s in zip(ks, arrays, shapes):
            width = int(np.prod(s))
            # a view slice is read through dask, chunk by chunk: the other views are never held whole
            X[:, col : col + width] = np.asarray(a if sliced else store.read(split, k.name)).reshape(n * per_item, width)
            col += width
    valid = np.asarray(store.valid(split), dtype=bool).copy()
    if not lazy:
        bad = np.isnan(X).reshape(n, -1).any(axis=1) & valid
        if bad.any():
            log.warning("split %r: %d items have NaN features although marked valid; they are skipped", split, bad.sum())
            valid &= ~bad
    return Features(split, tuple(ks), X, y, np.asarray(store.ids(split)), np.asarray(store.paths(split)), valid, draws, shapes, views)


def _has_view_axis(k: KeyInfo, views: int) -> bool:
    """Extracted arrays of a store with V > 1 views lead with (N, V, …); imported ones have one row per item."""
    return views > 1 and k.key is not None


def _layout(ks: Sequence[KeyInfo], arrays: Sequence[Any], n_labels: int, views: int) -> tuple[int, int, int, tuple[Shape, ...]]:
    """(N, V views, K draws, per-key (C, H, W)) after checking that all keys agree with each other,
    the labels and the store's ``views``.

    A store with V > 1 views holds extracted arrays as (N, V, C, H, W) or (N, V, K, C, H, W); imported
    arrays, and every array of a store without views, are (N, C, H, W) or (N, K, C, H, W). When
    imported and extracted keys of a views store are combined, V is 1: view 0 of the extracted ones.
    """
    ns, vs, ds, shapes = [], [], [], []
    for k, a in zip(ks, arrays):
        sh = tuple(int(s) for s in a.shape)
        lead = 1 if _has_view_axis(k, views) else 0
        if len(sh) not in (4 + lead, 5 + lead):
            want = "(N, V, C, H, W) or (N, V, K, C, H, W)" if lead else "(N, C, H, W) or (N, K, C, H, W)"
            why = f" (the store has V={views} views)" if lead else ""
            raise ProbeError(f"expected key {k.name!r} to be {want}{why}, got shape {sh}")
        if lead and sh[1] != views:
            raise ProbeError(f"expected key {k.name!r} to hold the store's {views} views on axis 1, got shape {sh}")
        ns.append(sh[0])
        vs.append(sh[1] if lead else 1)
        ds.append(sh[1 + lead] if len(sh) == 5 + lead else 1)
        shapes.append(sh[-3:])
    if len(set(ns)) > 1 or ns[0] != n_labels:
        counts = ", ".join(f"{k.name}: {n}" for k, n in zip(ks, ns))
        raise ProbeError(f"mismatched item counts: expected every key to have {n_labels} items (as the labels), got {counts}")
    if len(set(ds)) > 1:
        counts = ", ".join(f"{k.name}: {d}" for k, d in zip(ks, ds))
        raise ProbeError(f"expected every key to have the same number of noise draws, got {counts}")
    if len(set(vs)) > 1:
        log.warning("combining imported arrays (one row per item) with extracted arrays of %d views: using view 0 only", views)
    return ns[0], min(vs), ds[0], tuple(shapes)  # type: ignore[arg-type]


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
