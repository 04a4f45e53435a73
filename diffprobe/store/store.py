"""FeatureStore: the read/write API over a backend (see layout.py for the on-disk layout)."""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Any

import numpy as np

from diffprobe._version import __version__
from diffprobe.errors import StoreError, StoreKeyError
from diffprobe.store.arrays import ArrayLayout, feature_array_args
from diffprobe.store.backend import Backend, backend_for_path
from diffprobe.store.digests import DIGEST, ROW_PRINT, Digest, digest, print_rows
from diffprobe.store.layout import ITEM_ARRAYS, ITEM_DTYPES, SCHEMA_VERSION, SIDE_ARRAYS, FeatureKey, ItemColumn, chunk_items, plan_units
from diffprobe.store.metadata import array_findings, damaged, split_findings
from diffprobe.store.reader import StoreReader
from diffprobe.store.side import SideArrays
from diffprobe.store.verified import ReadCheck

#: Rows of the item table written (and read back by ``store verify --deep``) at a time, rounded to whole units.
TABLE_WINDOW = 65_536


def table_windows(n_items: int, unit_size: int) -> list[tuple[int, int]]:
    """[lo, hi) row ranges of about :data:`TABLE_WINDOW` rows, whole units each, covering a split's item table."""
    size = max(1, unit_size)
    window = size * max(1, TABLE_WINDOW // size)  # whole units: every chunk (and shard) written once
    return [(lo, min(n_items, lo + window)) for lo in range(0, n_items, window)]


class FeatureStore(SideArrays, StoreReader):
    """A feature store: splits of items, and per split one array per (t, block, pool) key.

    Open one with :func:`open_store`. Use as a context manager (or call :meth:`close`) to release
    file handles.
    """

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.checks = ReadCheck(self)  # every read of a done unit is checked against its marker
        self._trusted: set[str | tuple[str, str]] = set()  # splits and arrays whose metadata passed its check
        attrs = backend.root_attrs()
        if backend.mode != "w":
            if not attrs:
                raise StoreError(f"{backend.path} is not a diffprobe store (no 'diffprobe' root attributes)")
            if attrs.get("schema_version", 0) > SCHEMA_VERSION:
                raise StoreError(
                    f"{backend.path} has schema version {attrs['schema_version']}, newer than this diffprobe "
                    f"({__version__}, schema {SCHEMA_VERSION}); upgrade diffprobe"
                )

    # --- lifecycle -------------------------------------------------------------------------
    def __enter__(self) -> FeatureStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.backend.close()

    def __repr__(self) -> str:
        return f"FeatureStore({str(self.path)!r}, format={self.format}, splits={self.splits})"

    @property
    def path(self) -> Path:
        return self.backend.path

    @property
    def format(self) -> str:
        return self.backend.format

    # --- metadata --------------------------------------------------------------------------
    @property
    def attrs(self) -> dict[str, Any]:
        return self.backend.root_attrs()

    @property
    def config(self) -> dict[str, Any]:
        """The extraction configuration recorded in the store."""
        return dict(self.attrs.get("config", {}))

    @property
    def config_hash(self) -> str:
        return str(self.attrs.get("config_hash", ""))

    @property
    def class_names(self) -> list[str]:
        return list(self.attrs.get("class_names", []))

    @property
    def splits(self) -> list[str]:
        return self.backend.groups()

    @property
    def views(self) -> int:
        """V views per item (view 0 the evaluation transform); 1: the arrays have no view axis."""
        return int(self.attrs.get("identity", {}).get("views", 1))

    def _split(self, split: str) -> str:
        """``split``, its record and item table checked once (see :mod:`~diffprobe.store.metadata`)."""
        if split not in self._trusted:
            if split not in self.splits:
                raise StoreKeyError(f"no split {split!r} in {self.path}; splits: {', '.join(self.splits) or 'none'}")
            if found := split_findings(self, split):
                raise damaged(self, found)
            self._trusted.add(split)
        return split

    def n_items(self, split: str) -> int:
        return int(self.backend.group_attrs(self._split(split))["n_items"])

    def unit_size(self, split: str) -> int:
        return int(self.backend.group_attrs(self._split(split))["unit_size"])

    def units(self, split: str) -> list[tuple[int, int]]:
        """The work units (item ranges [start, stop)) of a split."""
        return plan_units(self.n_items(split), self.unit_size(split))

    def keys(self, split: str) -> list[str]:
        """Names of the feature (and imported) arrays of a split, sorted."""
        return [a for a in self.backend.arrays(self._split(split)) if a not in ITEM_ARRAYS and a not in SIDE_ARRAYS]

    def feature_keys(self, split: str) -> list[FeatureKey]:
        """The extracted (t, block, pool) keys of a split, sorted by t, block, pool."""
        return sorted(k for k in map(FeatureKey.maybe, self.keys(split)) if k is not None)

    def array_info(self, split: str, name: str) -> tuple[tuple[int, ...], np.dtype, dict[str, Any]]:
        return self.backend.array_info(self._split(split), self._name(split, name))

    def layout(self, split: str, name: str) -> ArrayLayout:
        """The per-item layout of one array, as recorded (older stores: from its dimension names)."""
        shape, _, attrs = self.array_info(split, name)
        dims = None if "layout" in attrs else self.backend.array_dims(split, name)
        return ArrayLayout.recorded(name, shape, attrs, dims)

    # --- reading ---------------------------------------------------------------------------
    def _name(self, split: str, name: str) -> str:
        """``name``, an array of ``split`` whose metadata is checked once (rows, item shape, dtype, chunks)."""
        if (split, name) in self._trusted:
            return name
        if name not in self.keys(split):
            have = ", ".join(self.keys(split)[:12]) or "none"
            raise StoreKeyError(f"no array {name!r} in split {split!r} of {self.path}; arrays: {have}")
        if found := array_findings(self, split, name, self.n_items(split), self.unit_size(split)):
            raise damaged(self, found)
        self._trusted.add((split, name))
        return name

    def read_array(self, split: str, name: str, *, lazy: bool = False, items: slice | np.ndarray | None = None) -> Any:
        name = self._name(split, name)
        if lazy:
            return self.checks.lazy(split, name)
        return self.checks.rows(split, name, items)

    def labels(self, split: str) -> np.ndarray:
        """(N,) int64 class indices; -1 where an item has no label."""
        return self.checks.rows(self._split(split), "label", None).astype(np.int64, copy=False)

    def ids(self, split: str) -> np.ndarray:
        """(N,) stable item ids (relative paths, sorted)."""
        return self.checks.rows(self._split(split), "item_id", None)

    def paths(self, split: str) -> np.ndarray:
        """(N,) source image paths."""
        return self.checks.rows(self._split(split), "path", None)

    def valid(self, split: str) -> np.ndarray:
        """(N,) False for items whose image could not be decoded (their feature rows are NaN)."""
        return self.checks.rows(self._split(split), "valid", None).astype(bool)

    # --- progress --------------------------------------------------------------------------
    def markers(self, split: str) -> dict[int, dict[str, Any]]:
        return self.backend.read_markers(self._split(split))

    def completeness(self, split: str) -> dict[str, tuple[int, int]]:
        """{array name: (units done, units total)}; imported arrays count as complete."""
        n_units = len(self.units(split))
        marks = self.markers(split)
        out: dict[str, tuple[int, int]] = {}
        for name in self.keys(split):
            if not FeatureKey.is_key(name):
                out[name] = (n_units, n_units)
            else:
                out[name] = (sum(1 for m in marks.values() if name in m.get("keys", ())), n_units)
        return out

    def is_complete(self) -> bool:
        return all(d == n for s in self.splits for d, n in self.completeness(s).values())

    # --- writing -----------------------------------------------------------------------------
    def update_attrs(self, attrs: dict[str, Any]) -> None:
        """Merge ``attrs`` into the store's root attributes (the recorded run: config, identity …)."""
        self.backend.update_root_attrs(attrs)

    def create_split(self, split: str, ids: ItemColumn, paths: ItemColumn, labels: ItemColumn, unit_size: int) -> None:
        """Create a split's group and its item table (``item_id``, ``path``, ``label``, ``valid``), all (N,).

        ``valid`` starts all False: each unit sets its rows when it is written.
        """
        n = len(ids)
        b = self.backend
        self._trusted = {t for t in self._trusted if t != split and not (isinstance(t, tuple) and t[0] == split)}
        b.create_group(split, {"n_items": n, "unit_size": unit_size})
        for name, dtype in ITEM_DTYPES.items():
            b.create_array(split, name, (n,), dtype, unit_size, unit_size, ("item",), {"kind": "items"})
        self.write_item_table(split, ids, paths, labels)

    def write_item_table(self, split: str, ids: ItemColumn, paths: ItemColumn, labels: ItemColumn) -> None:
        """Write a split's item ids, paths and labels (N,) and record their digests (see ``store verify --deep``).

        Written :data:`TABLE_WINDOW` rows (whole units) at a time, hashed as they go: a 1.28M-item
        split never exists as one array of strings. Any sliceable sequence will do (lists, numpy
        arrays, the columns of an :class:`~diffprobe.extract.sources.item_table.ItemTable`).
        """
        n = self.n_items(split)
        if not len(ids) == len(paths) == len(labels) == n:
            raise StoreError(f"expected {n} ids, paths and labels for split {split!r}, got {len(ids)}, {len(paths)} and {len(labels)}")
        size = self.unit_size(split)
        columns = {"item_id": (ids, np.dtype(str)), "path": (paths, np.dtype(str)), "label": (labels, np.dtype(np.int64))}
        digests = {name: Digest((n,), dtype) for name, (_, dtype) in columns.items()}
        firsts: dict[str, list[np.ndarray]] = {name: [] for name in columns}  # the first row of each unit (its row print)
        for lo, hi in table_windows(n, size):
            for name, (column, dtype) in columns.items():
                values = np.asarray(column[lo:hi], dtype=dtype)
                self.backend.write_rows(split, name, lo, values.astype(object) if values.dtype.kind == "U" else values)
                digests[name].add(values)
                firsts[name].append(values[print_rows(hi - lo, size)])
        prints = {name: [size, digest(np.concatenate(f) if f else np.zeros(0, columns[name][1]))] for name, f in firsts.items()}
        self.backend.update_group_attrs(split, {"digest": DIGEST, "digests": {k: d.hexdigest() for k, d in digests.items()},
                                                "print": ROW_PRINT, "prints": prints})  # fmt: skip

    def create_feature_array(self, split: str, key: FeatureKey, layout: ArrayLayout, dtype: str, module: str) -> None:
        """Create the NaN-filled array of ``key`` in ``split``: (N, *layout.item_shape), chunked along N
        and sharded by work unit, its layout recorded in its attributes."""
        self.backend.create_array(split, str(key), *feature_array_args(self.n_items(split), self.unit_size(split), key, layout, dtype, module))

    def commit(self) -> None:
        """Make the metadata written so far durable and fast to open (consolidated where supported)."""
        self.backend.consolidate()
        self.backend.flush()

    def write_array(
        self, split: str, name: str, data: np.ndarray, *, attrs: dict[str, Any] | None = None, overwrite: bool = False
    ) -> None:
        """Add an (N, ...) array aligned with ``ids(split)`` (e.g. features from another model)."""
        self.backend._check_writable()
        n = self.n_items(split)
        if FeatureKey.is_key(name) or name in ITEM_ARRAYS or not name.replace("_", "").replace("-", "").isalnum():
            raise StoreError(
                f"invalid array name {name!r}: use letters, digits, '_' or '-', not a feature-key pattern "
                f"like t0090_b24_p2 and not one of {', '.join(ITEM_ARRAYS)}"
            )
        if data.ndim < 1 or data.shape[0] != n:
            raise StoreError(f"array for split {split!r} must have {n} rows (one per item), got shape {data.shape}")
        if name in self.keys(split) and not overwrite:
            raise StoreError(f"split {split!r} already has an array {name!r}; pass overwrite=True to replace it")
        self._trusted.discard((split, name))
        dims = ("item", *(f"{name}_d{i}" for i in range(1, data.ndim)))
        row_bytes = int(np.prod(data.shape[1:], dtype=np.int64)) * data.dtype.itemsize
        unit = self.unit_size(split)
        self.backend.create_array(
            split, name, tuple(data.shape), str(data.dtype), chunk_items(unit, row_bytes), unit, dims,
            {"kind": "imported", **(attrs or {}), "imported": _now(), "digest": digest(data)},
        )
        self.backend.write_rows(split, name, 0, data)
        self.backend.flush()


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def open_store(path: str | Path, mode: str = "r") -> FeatureStore:
    """Open a feature store: a Zarr v3 directory, or an ``.h5``/``.hdf5`` file.

    Args:
        mode: "r" read-only (default), "a" read/write.
    """
    if mode not in ("r", "a"):
        raise StoreError(f"mode must be 'r' or 'a', got {mode!r} (stores are created by extraction)")
    p = Path(path).expanduser()
    if not p.exists():
        raise StoreError(f"no store at {p}")
    return FeatureStore(backend_for_path(p)(p, mode))


def create_store(path: str | Path, attrs: dict[str, Any]) -> FeatureStore:
    """Create (replacing) an empty store with root attributes ``attrs``."""
    p = Path(path).expanduser()
    backend = backend_for_path(p)(p, "w")
    backend.update_root_attrs({"schema_version": SCHEMA_VERSION, "package_version": __version__, "created": _now(), **attrs})
    return FeatureStore(backend)


