"""From a feature store to probe inputs: splits, label subsets, concatenation, streaming.

A :class:`Features` holds one split's rows for one or more store keys, concatenated column-wise as
float32 (N·V·K, D), item-major over the V views (V > 1 when extraction cached augmented views, see
``StoreReader.views``) and, within a view, over the K noise draws (K > 1 when extraction kept several
draws): row (i·V + v)·K + k is item i, view v, draw k. Training uses every (view, draw) row of an item
as a sample (:meth:`Features.rows`); evaluation uses view 0 — the evaluation transform — only, and
averages the predicted probabilities over its draws (:meth:`Features.eval_rows`). Rows are held in
memory when :data:`WORKING_COPIES` × their float32 bytes fit ``max_memory`` (the rows, their
standardised copy and the fit's temporaries: what the scale benchmark measured); larger ones stay
lazy (dask, chunked along N) and the probes stream them. Which arrays
to read is a :class:`~diffprobe.store.select.KeySelection`; how each is laid out per item, its
recorded :class:`~diffprobe.store.arrays.ArrayLayout`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from diffprobe.errors import StoreKeyError
from diffprobe.probes.errors import LabelError, ProbeError
from diffprobe.store.arrays import ArrayLayout
from diffprobe.store.coverage import Coverage, require_complete
from diffprobe.store.reader import StoreReader
from diffprobe.store.select import KeyInfo, KeySelection, resolve_selection

log = logging.getLogger(__name__)

Shape = tuple[int, int, int]
#: Probes load at most this many bytes of float32 features into memory unless told otherwise.
DEFAULT_MAX_MEMORY = 4 * 2**30
#: Peak memory of a probe holding its rows, in float32 copies of them: a 1,024-wide linear probe on
#: 100k rows (410 MB) peaked 1.5 GB above the imports (benchmarks/scale.py, "linear wide").
WORKING_COPIES = 4


class StoredColumn:
    """(N,) item ids or paths of a store's split, read on first use: a probe over 1.28M items holds
    them (~100 MB of strings) only when it writes predictions or matches a ``--train-subset``.

    Indexes like the numpy array it reads (``column[rows]``, ``len``, ``np.asarray``).
    """

    def __init__(self, read: Any, rows: np.ndarray | None, n: int) -> None:
        self._read, self._rows, self._n = read, rows, n
        self._values: np.ndarray | None = None

    def values(self) -> np.ndarray:
        if self._values is None:
            v = np.asarray(self._read())
            self._values = v if self._rows is None else v[self._rows]
        return self._values

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, index: Any) -> Any:
        return self.values()[index]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        v = self.values()
        return v if dtype is None else v.astype(dtype)


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
    ids: np.ndarray | StoredColumn
    paths: np.ndarray | StoredColumn | None
    valid: np.ndarray
    draws: int
    shapes: tuple[Shape, ...]
    views: int = 1
    #: which items of the split these are: all of them, or (``allow_incomplete``) those of its done units
    coverage: Coverage | None = None

    @property
    def complete(self) -> bool:
        return self.coverage is None or self.coverage.complete

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
        if self.per_item == 1:
            return items  # one row per item: the items themselves (1.28M of them: no copy)
        return (items[:, None] * self.per_item + np.arange(self.per_item)).ravel()

    def training_rows(self, items: np.ndarray) -> tuple[Any, np.ndarray]:
        """(X (len(items)·V·K, D), labels (len(items)·V·K,)) of ``items``: every (view, draw) row of
        each, item-major. When ``items`` are every item in order (the usual training split), X and y
        themselves: no index over 1.28M rows in a lazy X's graph, no copy of the labels."""
        if is_every_row(items, self.n_items):
            X, y = self.X, self.y
        else:
            X, y = self.X[self.rows(items)], self.y[np.asarray(items, dtype=np.int64)]
        return X, (y if self.per_item == 1 else np.repeat(y, self.per_item))

    def eval_rows(self, items: np.ndarray) -> np.ndarray:
        """(len(items)·K,) rows of X of ``items``: view 0's K draws of each item, item-major — what evaluation reads."""
        items = np.asarray(items, dtype=np.int64)
        return (items[:, None] * self.per_item + np.arange(self.draws)).ravel()

    def labelled(self) -> np.ndarray:
        """Items that decoded and carry a label."""
        return np.flatnonzero(self.valid & (self.y >= 0))


def is_every_row(index: np.ndarray, n: int, window: int = 65536) -> bool:
    """Whether ``index`` is 0, 1, …, n − 1 (compared ``window`` entries at a time: no (n,) temporaries)."""
    index = np.asarray(index)
    if index.ndim != 1 or index.shape[0] != n or index.dtype.kind not in "iu":
        return False
    return all(np.array_equal(index[lo : lo + window], np.arange(lo, min(lo + window, n))) for lo in range(0, n, window))


# -- loading ---------------------------------------------------------------------------------------
def load_features(
    store: StoreReader, split: str, keys: Sequence[KeyInfo | str], *, lazy: bool | None = None,
    max_memory: int = DEFAULT_MAX_MEMORY, first_view: bool = False, allow_incomplete: bool = False,
) -> Features:
    """Read and concatenate ``keys`` of ``split``.

    Args:
        keys: :class:`KeyInfo` or array names (all of one split, same N and number of draws).
        lazy: True keeps X as a dask array; None decides by size (:data:`WORKING_COPIES` × float32
            bytes > ``max_memory``).
        first_view: read view 0 only (all that evaluation uses); the result then has ``views`` 1.
        allow_incomplete: a split whose units are not all done gives the items of its done units
            (``coverage`` says which) instead of an error.
    Returns:
        :class:`Features` with X (N·V·K, Σ C·p·p), V the arrays' views (1 with ``first_view``).
    Raises:
        StoreIncompleteError: units of the split are not done for these keys (and not ``allow_incomplete``).
    """
    ks = resolve_selection(store, split, KeySelection(names=tuple(k.name if isinstance(k, KeyInfo) else str(k) for k in keys)))
    if not ks:
        raise ProbeError("expected at least one key to load, got none")
    cov = require_complete(store, split, [k.name for k in ks], allow_incomplete=allow_incomplete)
    sel = None if cov.complete else cov.rows  # the done units' items, when not all are done

    def rows(values: Any) -> np.ndarray:
        return np.asarray(values) if sel is None else np.asarray(values)[sel]

    y = rows(store.labels(split)).astype(np.int64)
    layouts = [store.layout(split, k.name) for k in ks]
    views, draws = _agree(ks, layouts, first_view)
    arrays = []
    for k, lay in zip(ks, layouts):
        a = store.read(split, k.name, lazy=True)
        a = a if sel is None else a[sel]
        arrays.append(lay.first_view(a) if lay.has_views and views == 1 else a)
    n = int(arrays[0].shape[0])
    if any(int(a.shape[0]) != n for a in arrays) or n != y.shape[0]:
        counts = ", ".join(f"{k.name}: {int(a.shape[0])}" for k, a in zip(ks, arrays))
        raise ProbeError(f"mismatched item counts: expected every key to have {y.shape[0]} items (as the labels), got {counts}")
    shapes = tuple(lay.map_shape for lay in layouts)
    per_item = views * draws
    total = sum(lay.width_per_row for lay in layouts)
    nbytes = n * per_item * total * 4
    if lazy is None:
        lazy = WORKING_COPIES * nbytes > max_memory
    if lazy:
        import dask.array as da

        X = da.concatenate([a.reshape(n * per_item, -1).astype(np.float32) for a in arrays], axis=1)
    else:
        X = np.empty((n * per_item, total), dtype=np.float32)
        col = 0
        for k, a, lay in zip(ks, arrays, layouts):
            width = lay.width_per_row
            sliced = lay.has_views and views == 1  # a view slice is read through dask, chunk by chunk: the other views are never held whole
            X[:, col : col + width] = np.asarray(a if sliced else store.read(split, k.name, items=sel)).reshape(n * per_item, width)
            col += width
    valid = rows(store.valid(split)).astype(bool)
    if not lazy:
        bad = np.isnan(X).reshape(n, -1).any(axis=1) & valid
        if bad.any():
            log.warning("split %r: %d items have NaN features although marked valid; they are skipped", split, bad.sum())
            valid &= ~bad
    ids, paths = StoredColumn(lambda: store.ids(split), sel, n), StoredColumn(lambda: store.paths(split), sel, n)
    return Features(split, tuple(ks), X, y, ids, paths, valid, draws, shapes, views, cov)


def _agree(ks: Sequence[KeyInfo], layouts: Sequence[ArrayLayout], first_view: bool) -> tuple[int, int]:
    """(V views, K draws) the concatenated keys share, read from their recorded layouts.

    Arrays with a view axis combined with arrays without one (imported features: one row per item)
    give view 0 of the former (V = 1); ``first_view`` asks for that too.
    """
    draws = {lay.n_draws for lay in layouts}
    if len(draws) > 1:
        counts = ", ".join(f"{k.name}: {lay.n_draws}" for k, lay in zip(ks, layouts))
        raise ProbeError(f"expected every key to have the same number of noise draws, got {counts}")
    views = {lay.n_views for lay in layouts}
    if len(views) > 1:
        counts = ", ".join(f"{k.name}: {lay.n_views}" for k, lay in zip(ks, layouts))
        if len({lay.n_views for lay in layouts if lay.has_views}) > 1:
            raise ProbeError(f"expected every key to have the same number of views, got {counts}")
        log.warning("combining arrays of one row per item with arrays of %d views: using view 0 only", max(views))
    return (1 if first_view or len(views) > 1 else views.pop()), draws.pop()


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
