"""CKA analyses over feature stores: blocks × blocks, timesteps × timesteps, store × store.

Each analysis selects arrays from a store (``store.read(split, name, lazy=True)``, streamed in row
chunks, never loaded whole), restricts them to the split's valid items (and, across two stores, to
items matched by id) — and, in a store with V > 1 views, to view 0 (the evaluation transform, the
features of a store without views) — computes the CKA matrix (:func:`~diffprobe.pipelines.cka.matrix.cka_matrix`)
and returns a :class:`CKAResult` (written by :func:`~diffprobe.pipelines.cka.outputs.write_outputs`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from diffprobe._version import __version__
from diffprobe.blocks import BlockSpec
from diffprobe.errors import StoreError, StoreKeyError
from diffprobe.pipelines.cka.config import PAIR_BY, CKAConfig
from diffprobe.pipelines.cka.matrix import MatrixResult, cka_matrix
from diffprobe.pipelines.cka.source import Source
from diffprobe.store.coverage import Coverage, require_complete
from diffprobe.store.layout import FeatureKey, pool_label
from diffprobe.store.reader import StoreReader
from diffprobe.store.select import ALL, All, KeySelection, resolve_selection

log = logging.getLogger(__name__)

#: An opened store, or the path of one (opened read-only, and closed, by the analysis).
StoreLike = StoreReader | str | Path


def _open(stack: ExitStack, store: StoreLike) -> StoreReader:
    """An opened store; stores opened here are closed when ``stack`` exits."""
    if isinstance(store, (str, Path)):
        from diffprobe.store import open_store

        return stack.enter_context(open_store(store))
    return store


@dataclass(frozen=True)
class CKAResult:
    """One CKA analysis: the matrix, what was compared, on which stores, with which settings."""

    analysis: str  # blocks | timesteps | stores
    matrix: MatrixResult
    row_axis: str
    col_axis: str
    selection: dict[str, Any]
    stores: list[dict[str, Any]]
    config: CKAConfig
    extra: dict[str, Any] = field(default_factory=dict)
    #: the similarity measure of the matrix: ``cka`` (``config``), or a metric of
    #: :data:`~diffprobe.pipelines.similarity.metrics.METRICS` with its settings in ``similarity``
    metric: str = "cka"
    similarity: Any = None
    #: per store read, ``{"complete", "items", "items_read"}`` of its split (see :mod:`diffprobe.store.coverage`)
    coverage: list[dict[str, Any]] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return all(c["complete"] for c in self.coverage)

    @property
    def values(self) -> np.ndarray:
        return self.matrix.values

    def summary(self) -> str:
        """One line: shape, items, estimator, and how it was computed."""
        m, cfg = self.matrix, self.config
        how = f"{cfg.kernel}, {cfg.estimator}; {m.facts.get('method')}" if self.metric == "cka" else self.metric_text()
        return (
            f"{'CKA' if self.metric == 'cka' else self.metric} {len(m.row_labels)}×{len(m.col_labels)} over {m.n_items} items "
            f"({how} on {m.facts.get('device')}, {m.facts.get('seconds')} s)"
            + ("" if self.complete else "; INCOMPLETE: only the finished items of the store(s) (--allow-incomplete)")
        )

    def metric_text(self) -> str:
        """The metric with the settings that shape it: ``mutual-knn (k=10, cosine)``."""
        sim = self.similarity
        if self.metric == "cka" or sim is None:
            return f"CKA ({self.config.kernel}, {self.config.estimator})"
        shaped = {"mutual-knn": f"k={sim.k}, {sim.neighbours}", "cknna": f"k={sim.k}, {sim.neighbours}",
                  "cycle-knn": f"k={sim.k}, {sim.neighbours}", "svcca": f"variance {sim.variance:g}", "pwcca": f"ridge {sim.ridge:g}",
                  "rsa": f"{sim.rdm} RDMs, Spearman"}.get(self.metric, "")  # fmt: skip
        return f"{self.metric} ({shaped})" if shaped else self.metric

    def to_dict(self) -> dict[str, Any]:
        m = self.matrix
        return {
            "analysis": self.analysis, "metric": self.metric, "row_axis": self.row_axis, "col_axis": self.col_axis,
            "row_labels": m.row_labels, "col_labels": m.col_labels, self.metric: m.values.tolist(),
            "similarity": None if self.similarity is None else self.similarity.to_dict(),
            "n_items": m.n_items, "selection": self.selection, "stores": self.stores, "config": self.config.to_dict(),
            "run": m.facts, "complete": self.complete, "coverage": self.coverage, "diffprobe_version": __version__,
        }


def resolve_split(split: str | None, *stores: StoreReader) -> str:
    """``split`` if every store has it; None picks the only split the stores share."""
    common = [s for s in stores[0].splits if all(s in st.splits for st in stores[1:])]
    if split is None:
        if len(common) == 1:
            return common[0]
        raise StoreKeyError(f"expected --split, the store(s) hold several splits; valid: {', '.join(common) or 'none in common'}")
    if split not in common:
        valid = ", ".join(common) or "none in common"
        raise StoreKeyError(f"expected a split held by the store(s), got {split!r}; valid: {valid}")
    return split


def _source(store: StoreReader, split: str, name: str, label: str, rows: np.ndarray) -> Source:
    """Rows ``rows`` of one array — view 0 of an array with a view axis ((N, V, …) → (N, …)), as its recorded layout says."""
    return Source(label, store.layout(split, name).first_view(store.read(split, name, lazy=True)), rows)


def _valid_rows(store: StoreReader, split: str, names: Sequence[str], config: CKAConfig) -> tuple[np.ndarray, Coverage]:
    """The valid items of ``split`` in units done for ``names`` (all of them, unless ``config.allow_incomplete``)."""
    cov = require_complete(store, split, names, allow_incomplete=config.allow_incomplete)
    return np.intersect1d(np.flatnonzero(np.asarray(store.valid(split), dtype=bool)), cov.rows), cov


def _store_info(store: StoreReader) -> dict[str, Any]:
    model = ((getattr(store, "attrs", {}) or {}).get("config") or {}).get("model")
    return {"path": str(store.path), "config_hash": store.config_hash, "model": model}


def cka_blocks(
    store: StoreLike, *, split: str | None = None, t: int | None = None, pool: int | None = 1,
    blocks: Sequence[BlockSpec] | None = None, config: CKAConfig | None = None, metric: str = "cka", similarity: Any = None,
) -> CKAResult:
    """CKA (or ``metric``, with its ``similarity`` settings) between every pair of blocks at one
    timestep and pool size (pool None = full map).

    t=None picks the store's only timestep; blocks (numbers or module paths) None takes every
    block stored at (t, pool).
    """
    with ExitStack() as stack:
        return _along(_open(stack, store), split, pool, config or CKAConfig(), vary="block", fixed=t, chosen=blocks,
                      metric=metric, similarity=similarity)  # fmt: skip


def cka_timesteps(
    store: StoreLike, *, block: BlockSpec | None = None, split: str | None = None, pool: int | None = 1,
    timesteps: Sequence[int] | None = None, config: CKAConfig | None = None, metric: str = "cka", similarity: Any = None,
) -> CKAResult:
    """CKA (or ``metric``) between every pair of timesteps for one block (number or module path;
    None: the only one stored) and pool size."""
    with ExitStack() as stack:
        s = _open(stack, store)
        return _along(s, split, pool, config or CKAConfig(), vary="t", fixed=block, chosen=timesteps, metric=metric, similarity=similarity)


def _matrix(rows: Sequence[Source], cols: Sequence[Source] | None, config: CKAConfig, metric: str, similarity: Any) -> MatrixResult:
    """``metric``'s matrix: CKA as it always was, or any metric of the similarity registry."""
    if metric == "cka":
        return cka_matrix(rows, cols, config)
    from diffprobe.pipelines.similarity.config import SimilarityConfig
    from diffprobe.pipelines.similarity.matrix import similarity_matrix

    sim = similarity or SimilarityConfig(device=config.device, max_memory=config.max_memory, chunk_rows=config.chunk_rows)
    return similarity_matrix(rows, cols, metric, sim)


def _along(s: StoreReader, split: str | None, pool: int | None, config: CKAConfig, *, vary: str,
           fixed: BlockSpec | int | None, chosen: Sequence[BlockSpec] | None, metric: str = "cka", similarity: Any = None) -> CKAResult:  # fmt: skip
    """The CKA matrix over the stored blocks at one t (``vary="block"``) or the stored timesteps of
    one block (``vary="t"``), at one pool; ``chosen`` restricts the varied axis (None: every stored value)."""
    split = resolve_split(split, s)
    # the fixed and the varied axis' values: timesteps or blocks as ``vary`` says (KeySelection checks them)
    one: tuple[Any, ...] = () if fixed is None else (fixed,)
    many: tuple[Any, ...] | All = ALL if chosen is None else tuple(chosen)
    sel = KeySelection(one, many, (pool,)) if vary == "block" else KeySelection(many, one, (pool,))
    keys = sorted(k.key for k in resolve_selection(s, split, sel) if k.key is not None)
    plural, label = ("blocks", "block") if vary == "block" else ("timesteps", "timestep")
    if len(keys) < 2:
        where = f"at t={keys[0].t}" if vary == "block" and keys else f"for block {keys[0].block}" if keys else ""
        raise StoreKeyError(f"expected at least 2 {plural} {where}, pool {pool_label(pool)} in split {split!r}, got {len(keys)}")
    rows, cov = _valid_rows(s, split, [k.name for k in keys], config)
    srcs = [_source(s, split, k.name, str(getattr(k, vary)), rows) for k in keys]
    m = _matrix(srcs, None, config, metric, similarity)
    fixed_field = "t" if vary == "block" else "block"
    sel_info = {"split": split, fixed_field: getattr(keys[0], fixed_field), "pool": pool, plural: [getattr(k, vary) for k in keys]}
    return CKAResult(plural, m, label, label, sel_info, [_store_info(s)], config, coverage=[cov.record()], metric=metric, similarity=similarity)


def match_items(ids_a: Sequence[str], ids_b: Sequence[str]) -> np.ndarray:
    """(len(ids_a),) row in B of each item of A; StoreError saying how many ids differ when the sets differ."""
    a, b = [str(i) for i in ids_a], [str(i) for i in ids_b]
    pos_b = {v: i for i, v in enumerate(b)}
    for name, ids, uniq in (("A", a, set(a)), ("B", b, pos_b)):
        if len(uniq) != len(ids):
            raise StoreError(f"store {name} repeats {len(ids) - len(uniq)} item ids; items cannot be matched")
    only_a = [v for v in a if v not in pos_b]
    set_a = set(a)
    only_b = [v for v in b if v not in set_a]
    if only_a or only_b:
        eg = ", ".join(repr(v) for v in (only_a + only_b)[:3])
        raise StoreError(
            f"expected the two stores to hold the same items, got {len(only_a)} ids of A ({len(a)} items) missing from B and "
            f"{len(only_b)} ids of B ({len(b)} items) missing from A (e.g. {eg}); compare stores extracted from the same "
            "images, or import other features with `diffprobe store import --ids`"
        )
    return np.array([pos_b[v] for v in a], dtype=np.int64)


def _select_names(store: StoreReader, split: str, patterns: Sequence[str] | None) -> list[str]:
    """The arrays of ``split`` that ``patterns`` (names or shell patterns) select; None: every array."""
    if not patterns:
        return list(store.keys(split))
    return [k.name for k in resolve_selection(store, split, KeySelection(names=tuple(patterns)))]


def pair_items(ids_a: Sequence[str], ids_b: Sequence[str], pair_by: str) -> np.ndarray:
    """(len(ids_a),) row in B of each item of A. ``position``: row i with row i (the counts must
    agree); ``id``: :func:`match_items`."""
    if pair_by == "id":
        return match_items(ids_a, ids_b)
    if pair_by != "position":
        raise ValueError(f"pair_by must be one of {PAIR_BY}, got {pair_by!r}")
    if len(ids_a) != len(ids_b):
        raise StoreError(f"--pair-by position needs as many items in both stores, got {len(ids_a)} in A and {len(ids_b)} in B")
    return np.arange(len(ids_a), dtype=np.int64)


def axis_labels(store: StoreReader, split: str, names: Sequence[str], side: str) -> tuple[list[str], str]:
    """(a label per array, the axis title). Arrays extracted at one t and pool are labelled by block
    number (diffusion models) or layer name (image models, whose features have no timestep); other
    arrays by their names."""
    keys = [FeatureKey.maybe(n) for n in names]
    fixed = {(k.t, k.pool) for k in keys if k is not None}
    if None in keys or len(fixed) != 1:
        return list(names), side
    t, pool = fixed.pop()
    attrs = getattr(store, "attrs", {}) or {}
    model = (attrs.get("config") or {}).get("model") or "?"
    if (attrs.get("identity") or {}).get("noise") == "none":
        labels = [str(store.array_info(split, n)[2].get("module") or n) for n in names]
        return labels, f"{side}: {model} layer (pool {pool_label(pool)})"
    return [str(k.block) for k in keys if k is not None], f"{side}: {model} block (t = {t}, pool {pool_label(pool)})"


def cka_stores(
    store_a: StoreLike, store_b: StoreLike, *, split: str | None = None, keys_a: Sequence[str] | None = None,
    keys_b: Sequence[str] | None = None, pair_by: str = "id", config: CKAConfig | None = None, metric: str = "cka",
    similarity: Any = None,
) -> CKAResult:
    """CKA of every array of A (rows) against every array of B (columns), items paired by id
    (``pair_by="position"``: by row, for stores whose ids differ but whose rows are the same images).

    keys_a / keys_b: shell-style patterns (``t0090_*_p1``) selecting array names; None takes all.
    The items compared are those valid in both stores.
    """
    with ExitStack() as stack:
        return _stores(_open(stack, store_a), _open(stack, store_b), split, keys_a, keys_b, pair_by, config or CKAConfig(), metric, similarity)


def _stores(a: StoreReader, b: StoreReader, split: str | None, keys_a: Sequence[str] | None,
            keys_b: Sequence[str] | None, pair_by: str, config: CKAConfig, metric: str = "cka", similarity: Any = None) -> CKAResult:
    split = resolve_split(split, a, b)
    names_a, names_b = _select_names(a, split, keys_a), _select_names(b, split, keys_b)
    in_b = pair_items([str(i) for i in a.ids(split)], [str(i) for i in b.ids(split)], pair_by)
    (done_a, cov_a), (done_b, cov_b) = _valid_rows(a, split, names_a, config), _valid_rows(b, split, names_b, config)
    ok = np.zeros(len(in_b), dtype=bool)
    ok[done_a] = True
    ok &= np.isin(in_b, done_b)
    rows_a = np.flatnonzero(ok)
    rows_b = in_b[rows_a]
    (labels_a, axis_a), (labels_b, axis_b) = axis_labels(a, split, names_a, "store A"), axis_labels(b, split, names_b, "store B")
    srcs_a = [_source(a, split, n, lab, rows_a) for n, lab in zip(names_a, labels_a)]
    srcs_b = [_source(b, split, n, lab, rows_b) for n, lab in zip(names_b, labels_b)]
    m = _matrix(srcs_a, srcs_b, config, metric, similarity)
    sel = {"split": split, "keys_a": names_a, "keys_b": names_b, "pair_by": pair_by,
           "reordered_b": bool(np.any(in_b != np.arange(len(in_b))))}  # fmt: skip
    return CKAResult("stores", m, axis_a, axis_b, sel, [_store_info(a), _store_info(b)], config, coverage=[cov_a.record(), cov_b.record()],
                     metric=metric, similarity=similarity)  # fmt: skip
