"""CKA analyses over feature stores: blocks × blocks, timesteps × timesteps, store × store.

Each analysis selects arrays from a store (``store.read(split, name, lazy=True)``, streamed in row
chunks, never loaded whole), restricts them to the split's valid items (and, across two stores, to
items matched by id) — and, in a store with V > 1 views, to view 0 (the evaluation transform, the
features of a store without views) — computes the CKA matrix (:func:`~diffprobe.pipelines.cka.matrix.cka_matrix`)
and returns a :class:`CKAResult` (written by :func:`~diffprobe.pipelines.cka.outputs.write_outputs`).
"""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from diffprobe._version import __version__
from diffprobe.errors import StoreError, StoreKeyError
from diffprobe.pipelines.cka.config import PAIR_BY, CKAConfig
from diffprobe.pipelines.cka.matrix import MatrixResult, cka_matrix
from diffprobe.pipelines.cka.source import Source
from diffprobe.store.layout import FeatureKey, pool_label, pool_order
from diffprobe.store.reader import StoreReader, views_of
from diffprobe.store.select import BlockSpec, resolve_block_specs

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

    @property
    def values(self) -> np.ndarray:
        return self.matrix.values

    def summary(self) -> str:
        """One line: shape, items, estimator, and how it was computed."""
        m, cfg = self.matrix, self.config
        return (
            f"CKA {len(m.row_labels)}×{len(m.col_labels)} over {m.n_items} items "
            f"({cfg.kernel}, {cfg.estimator}; {m.facts.get('method')} on {m.facts.get('device')}, {m.facts.get('seconds')} s)"
        )

    def to_dict(self) -> dict[str, Any]:
        m = self.matrix
        return {
            "analysis": self.analysis, "row_axis": self.row_axis, "col_axis": self.col_axis,
            "row_labels": m.row_labels, "col_labels": m.col_labels, "cka": m.values.tolist(),
            "n_items": m.n_items, "selection": self.selection, "stores": self.stores, "config": self.config.to_dict(),
            "run": m.facts, "diffprobe_version": __version__,
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


def _pick(values: Sequence[int], value: int | None, what: str, flag: str) -> int:
    """``value`` if stored; None picks the only stored one; else a StoreKeyError listing the choices."""
    vals = sorted(set(values))
    if value is None and len(vals) == 1:
        return vals[0]
    if value is None or value not in vals:
        got = "several are stored" if value is None else f"got {value}"
        raise StoreKeyError(f"expected {flag} naming one of the stored {what}, {got}; valid: {', '.join(map(str, vals)) or 'none'}")
    return value


def _check_pool(store: StoreReader, split: str, pool: int | None) -> None:
    pools = sorted({k.pool for k in store.feature_keys(split)}, key=pool_order)
    if pool not in pools:
        valid = ", ".join(map(pool_label, pools)) or "none"
        raise StoreKeyError(f"expected --pool naming a stored pool size, got {pool_label(pool)}; valid: {valid}")


def _source(store: StoreReader, split: str, name: str, label: str, rows: np.ndarray) -> Source:
    """Rows ``rows`` of one array; view 0 of an extracted array of a store with views ((N, V, …) → (N, …))."""
    array = store.read(split, name, lazy=True)
    return Source(label, array[:, 0] if views_of(store) > 1 and FeatureKey.maybe(name) is not None else array, rows)


def _valid_rows(store: StoreReader, split: str) -> np.ndarray:
    return np.flatnonzero(np.asarray(store.valid(split), dtype=bool))


def _store_info(store: StoreReader) -> dict[str, Any]:
    model = ((getattr(store, "attrs", {}) or {}).get("config") or {}).get("model")
    return {"path": str(store.path), "config_hash": store.config_hash, "model": model}


def cka_blocks(
    store: StoreLike, *, split: str | None = None, t: int | None = None, pool: int | None = 1,
    blocks: Sequence[BlockSpec] | None = None, config: CKAConfig | None = None,
) -> CKAResult:
    """CKA between every pair of blocks at one timestep and pool size (pool None = full map).

    t=None picks the store's only timestep; blocks (numbers or module paths) None takes every
    block stored at (t, pool).
    """
    with ExitStack() as stack:
        return _along(_open(stack, store), split, pool, config or CKAConfig(), vary="block", fixed=t, chosen=blocks)


def cka_timesteps(
    store: StoreLike, *, block: BlockSpec | None = None, split: str | None = None, pool: int | None = 1,
    timesteps: Sequence[int] | None = None, config: CKAConfig | None = None,
) -> CKAResult:
    """CKA between every pair of timesteps for one block (number or module path; None: the only
    one stored) and pool size."""
    with ExitStack() as stack:
        s = _open(stack, store)
        return _along(s, split, pool, config or CKAConfig(), vary="t", fixed=block, chosen=timesteps)


# The two single-store matrices differ only in which key field varies: blocks at a fixed t, or
# timesteps at a fixed block.
_AXES = {
    # vary: (fixed field, fixed's plural, its option, what "at …" says, plural of vary, kind, label)
    "block": ("t", "timesteps", "--t", "at t={}", "blocks", "blocks", "block"),
    "t": ("block", "blocks", "--blocks", "for block {}", "timesteps", "timesteps", "timestep"),
}


def _along(s: StoreReader, split: str | None, pool: int | None, config: CKAConfig, *, vary: str,
           fixed: BlockSpec | None, chosen: Sequence[BlockSpec] | None) -> CKAResult:  # fmt: skip
    fixed_field, fixed_plural, option, at, plural, kind, label = _AXES[vary]
    split = resolve_split(split, s)
    _check_pool(s, split, pool)
    if vary == "block":
        chosen = None if chosen is None else resolve_block_specs(s, split, chosen)
    elif fixed is not None:
        fixed = resolve_block_specs(s, split, [fixed])[0]
    keys = [k for k in s.feature_keys(split) if k.pool == pool]
    fixed = _pick([getattr(k, fixed_field) for k in keys], None if fixed is None else int(fixed), fixed_plural, option)
    keys = sorted((k for k in keys if getattr(k, fixed_field) == fixed), key=lambda k: getattr(k, vary))
    have = [getattr(k, vary) for k in keys]
    where_txt = f"{at.format(fixed)}, pool {pool_label(pool)}"
    if chosen is not None:
        missing = [v for v in chosen if v not in have]
        if missing:
            raise StoreKeyError(f"expected {plural} stored {where_txt}, got {missing}; valid: {have}")
        keys = [k for k in keys if getattr(k, vary) in set(chosen)]
    if len(keys) < 2:
        raise StoreKeyError(f"expected at least 2 {plural} {where_txt} in split {split!r}, got {have}")
    rows = _valid_rows(s, split)
    srcs = [_source(s, split, str(k), str(getattr(k, vary)), rows) for k in keys]
    m = cka_matrix(srcs, None, config)
    sel = {"split": split, fixed_field: fixed, "pool": pool, plural: [getattr(k, vary) for k in keys]}
    return CKAResult(kind, m, label, label, sel, [_store_info(s)], config)


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


def _select_names(store: StoreReader, split: str, patterns: Sequence[str] | None, side: str) -> list[str]:
    names = list(store.keys(split))
    if not patterns:
        return names
    chosen = [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in patterns)]
    if not chosen:
        raise StoreKeyError(f"expected store {side} keys matching {list(patterns)} in split {split!r}; valid: {', '.join(names)}")
    return chosen


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
    keys_b: Sequence[str] | None = None, pair_by: str = "id", config: CKAConfig | None = None,
) -> CKAResult:
    """CKA of every array of A (rows) against every array of B (columns), items paired by id
    (``pair_by="position"``: by row, for stores whose ids differ but whose rows are the same images).

    keys_a / keys_b: shell-style patterns (``t0090_*_p1``) selecting array names; None takes all.
    The items compared are those valid in both stores.
    """
    with ExitStack() as stack:
        return _stores(_open(stack, store_a), _open(stack, store_b), split, keys_a, keys_b, pair_by, config or CKAConfig())


def _stores(a: StoreReader, b: StoreReader, split: str | None, keys_a: Sequence[str] | None,
            keys_b: Sequence[str] | None, pair_by: str, config: CKAConfig) -> CKAResult:
    split = resolve_split(split, a, b)
    names_a, names_b = _select_names(a, split, keys_a, "A"), _select_names(b, split, keys_b, "B")
    in_b = pair_items([str(i) for i in a.ids(split)], [str(i) for i in b.ids(split)], pair_by)
    ok = np.asarray(a.valid(split), dtype=bool) & np.asarray(b.valid(split), dtype=bool)[in_b]
    rows_a = np.flatnonzero(ok)
    rows_b = in_b[rows_a]
    (labels_a, axis_a), (labels_b, axis_b) = axis_labels(a, split, names_a, "store A"), axis_labels(b, split, names_b, "store B")
    srcs_a = [_source(a, split, n, lab, rows_a) for n, lab in zip(names_a, labels_a)]
    srcs_b = [_source(b, split, n, lab, rows_b) for n, lab in zip(names_b, labels_b)]
    m = cka_matrix(srcs_a, srcs_b, config)
    sel = {"split": split, "keys_a": names_a, "keys_b": names_b, "pair_by": pair_by,
           "reordered_b": bool(np.any(in_b != np.arange(len(in_b))))}  # fmt: skip
    return CKAResult("stores", m, axis_a, axis_b, sel, [_store_info(a), _store_info(b)], config)
