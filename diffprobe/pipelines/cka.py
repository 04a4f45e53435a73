"""CKA analyses over feature stores: blocks × blocks, timesteps × timesteps, store × store.

Each analysis selects arrays from a store (``store.read(split, name, lazy=True)``, streamed in row
chunks, never loaded whole), restricts them to the split's valid items (and, across two stores, to
items matched by id), computes the CKA matrix (cka_matrix) and returns a :class:`CKAResult` that
:func:`write_outputs` saves as DIR/cka.csv, DIR/cka.json and DIR/cka.png.
"""

from __future__ import annotations

import fnmatch
import json
import logging
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from diffprobe._version import __version__
from diffprobe.errors import StoreError, StoreKeyError
from diffprobe.pipelines.cka_config import CKAConfig
from diffprobe.pipelines.cka_matrix import MatrixResult, cka_matrix
from diffprobe.pipelines.cka_plot import heatmap
from diffprobe.pipelines.cka_source import Source

log = logging.getLogger(__name__)

StoreLike = Any  # an opened store (diffprobe.store API) or a path to one


def open_store_at(path: str | Path) -> Any:
    """Open a store read-only (kept as a module function so callers and tests can substitute it)."""
    from diffprobe.store import open_store

    return open_store(path)


def _open(stack: ExitStack, store: StoreLike) -> tuple[Any, str]:
    """An opened store and where it lives; stores opened here are closed when ``stack`` exits."""
    if isinstance(store, (str, Path)):
        s = open_store_at(store)
        if hasattr(s, "close"):
            stack.callback(s.close)
        return s, str(store)
    return store, str(getattr(store, "path", "<in memory>"))


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

    def to_dict(self) -> dict[str, Any]:
        m = self.matrix
        return {
            "analysis": self.analysis, "row_axis": self.row_axis, "col_axis": self.col_axis,
            "row_labels": m.row_labels, "col_labels": m.col_labels, "cka": m.values.tolist(),
            "n_items": m.n_items, "selection": self.selection, "stores": self.stores, "config": self.config.to_dict(),
            "run": m.facts, "diffprobe_version": __version__,
        }


def resolve_split(split: str | None, *stores: Any) -> str:
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


def _pick(values: Sequence[Any], value: Any, what: str, flag: str) -> Any:
    """``value`` if stored; None picks the only stored one; else a StoreKeyError listing the choices."""
    vals = sorted(set(values), key=lambda v: (v is None, v))
    if value is None and len(vals) == 1:
        return vals[0]
    if value is None or value not in vals:
        got = "several are stored" if value is None else f"got {_fmt_pool(value)}"
        valid = ", ".join(map(_fmt_pool, vals)) or "none"
        raise StoreKeyError(f"expected {flag} naming one of the stored {what}, {got}; valid: {valid}")
    return value


def _check_pool(store: Any, split: str, pool: int | None) -> None:
    pools = sorted({k.pool for k in store.feature_keys(split)}, key=lambda v: (v is None, v))
    if pool not in pools:
        valid = ", ".join(map(_fmt_pool, pools)) or "none"
        raise StoreKeyError(f"expected --pool naming a stored pool size, got {_fmt_pool(pool)}; valid: {valid}")


def _fmt_pool(v: Any) -> str:
    return "full" if v is None else str(v)


def _source(store: Any, split: str, name: str, label: str, rows: np.ndarray) -> Source:
    return Source(label, store.read(split, name, lazy=True), rows)


def _valid_rows(store: Any, split: str) -> np.ndarray:
    return np.flatnonzero(np.asarray(store.valid(split), dtype=bool))


def _store_info(store: Any, where: str) -> dict[str, Any]:
    return {"path": where, "config_hash": getattr(store, "config_hash", None)}


def cka_blocks(
    store: StoreLike, *, split: str | None = None, t: int | None = None, pool: int | None = 1,
    blocks: Sequence[int] | None = None, config: CKAConfig | None = None,
) -> CKAResult:
    """CKA between every pair of blocks at one timestep and pool size (pool None = full map).

    t=None picks the store's only timestep; blocks=None takes every block stored at (t, pool).
    """
    with ExitStack() as stack:
        s, where = _open(stack, store)
        return _blocks(s, where, split, t, pool, blocks, config or CKAConfig())


def _blocks(s: Any, where: str, split: str | None, t: int | None, pool: int | None, blocks: Sequence[int] | None,
            config: CKAConfig) -> CKAResult:
    return _along(s, where, split, pool, config, vary="block", fixed=t, chosen=blocks)


def cka_timesteps(
    store: StoreLike, *, block: int | None = None, split: str | None = None, pool: int | None = 1,
    timesteps: Sequence[int] | None = None, config: CKAConfig | None = None,
) -> CKAResult:
    """CKA between every pair of timesteps for one block and pool size (block None: the only one stored)."""
    with ExitStack() as stack:
        s, where = _open(stack, store)
        return _timesteps(s, where, block, split, pool, timesteps, config or CKAConfig())


def _timesteps(s: Any, where: str, block: int | None, split: str | None, pool: int | None, timesteps: Sequence[int] | None,
               config: CKAConfig) -> CKAResult:
    return _along(s, where, split, pool, config, vary="t", fixed=block, chosen=timesteps)


# The two single-store matrices differ only in which key field varies: blocks at a fixed t, or
# timesteps at a fixed block.
_AXES = {
    # vary: (fixed field, fixed's plural, its option, what "at …" says, plural of vary, kind, label)
    "block": ("t", "timesteps", "--t", "at t={}", "blocks", "blocks", "block"),
    "t": ("block", "blocks", "--block", "for block {}", "timesteps", "timesteps", "timestep"),
}


def _along(s: Any, where: str, split: str | None, pool: int | None, config: CKAConfig, *, vary: str,
           fixed: int | None, chosen: Sequence[int] | None) -> CKAResult:
    fixed_field, fixed_plural, option, at, plural, kind, label = _AXES[vary]
    split = resolve_split(split, s)
    _check_pool(s, split, pool)
    keys = [k for k in s.feature_keys(split) if k.pool == pool]
    fixed = _pick([getattr(k, fixed_field) for k in keys], fixed, fixed_plural, option)
    keys = sorted((k for k in keys if getattr(k, fixed_field) == fixed), key=lambda k: getattr(k, vary))
    have = [getattr(k, vary) for k in keys]
    where_txt = f"{at.format(fixed)}, pool {_fmt_pool(pool)}"
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
    return CKAResult(kind, m, label, label, sel, [_store_info(s, where)], config)


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


def _select_names(store: Any, split: str, patterns: Sequence[str] | None, side: str) -> list[str]:
    names = list(store.keys(split))
    if not patterns:
        return names
    chosen = [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in patterns)]
    if not chosen:
        raise StoreKeyError(f"expected store {side} keys matching {list(patterns)} in split {split!r}; valid: {', '.join(names)}")
    return chosen


def cka_stores(
    store_a: StoreLike, store_b: StoreLike, *, split: str | None = None, keys_a: Sequence[str] | None = None,
    keys_b: Sequence[str] | None = None, config: CKAConfig | None = None,
) -> CKAResult:
    """CKA of every array of A (rows) against every array of B (columns), items matched by id.

    keys_a / keys_b: shell-style patterns (``t0090_*_p1``) selecting array names; None takes all.
    The items compared are those valid in both stores.
    """
    with ExitStack() as stack:
        (a, where_a), (b, where_b) = _open(stack, store_a), _open(stack, store_b)
        return _stores(a, where_a, b, where_b, split, keys_a, keys_b, config or CKAConfig())


def _stores(a: Any, where_a: str, b: Any, where_b: str, split: str | None, keys_a: Sequence[str] | None,
            keys_b: Sequence[str] | None, config: CKAConfig) -> CKAResult:
    split = resolve_split(split, a, b)
    names_a, names_b = _select_names(a, split, keys_a, "A"), _select_names(b, split, keys_b, "B")
    in_b = match_items(a.ids(split), b.ids(split))
    ok = np.asarray(a.valid(split), dtype=bool) & np.asarray(b.valid(split), dtype=bool)[in_b]
    rows_a = np.flatnonzero(ok)
    rows_b = in_b[rows_a]
    srcs_a = [_source(a, split, n, n, rows_a) for n in names_a]
    srcs_b = [_source(b, split, n, n, rows_b) for n in names_b]
    m = cka_matrix(srcs_a, srcs_b, config)
    sel = {"split": split, "keys_a": names_a, "keys_b": names_b, "reordered_b": bool(np.any(in_b != np.arange(len(in_b))))}
    return CKAResult("stores", m, "store A", "store B", sel, [_store_info(a, where_a), _store_info(b, where_b)], config)


def _title(r: CKAResult) -> str:
    sel = r.selection
    what = {"blocks": f"blocks × blocks, t={sel.get('t')}", "timesteps": f"timesteps × timesteps, block {sel.get('block')}",
            "stores": "store A × store B"}[r.analysis]
    pool = f", pool {_fmt_pool(sel['pool'])}" if "pool" in sel else ""
    return f"{what}{pool}, split {sel['split']} (N={r.matrix.n_items})"


def write_outputs(result: CKAResult, out_dir: str | Path) -> dict[str, Path]:
    """Write DIR/cka.csv (labels in the first row and column), DIR/cka.json and DIR/cka.png."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    m = result.matrix
    corner = {"blocks": "block", "timesteps": "t", "stores": "A \\ B"}[result.analysis]
    lines = [",".join([corner, *m.col_labels])]
    lines += [",".join([lab, *(f"{v:.12g}" for v in row)]) for lab, row in zip(m.row_labels, m.values)]
    paths = {"csv": out / "cka.csv", "json": out / "cka.json", "png": out / "cka.png"}
    paths["csv"].write_text("\n".join(lines) + "\n")
    paths["json"].write_text(json.dumps(result.to_dict(), indent=1, default=str) + "\n")
    cfg = result.config
    heatmap(m.values, m.row_labels, m.col_labels, paths["png"], title=_title(result), row_axis=result.row_axis,
            col_axis=result.col_axis, colorbar_label=f"CKA ({cfg.kernel}, {cfg.estimator})")
    log.info("wrote %s, %s and %s", *paths.values())
    return paths


def demo_cka(store_path: str | Path, out_dir: str | Path, split: str, t: int, pool: int | None) -> Path:
    """Blocks × blocks linear CKA heatmap of a store (the demo's figure); returns the PNG path."""
    return write_outputs(cka_blocks(store_path, split=split, t=t, pool=pool), out_dir)["png"]
