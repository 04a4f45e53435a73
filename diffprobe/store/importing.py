"""Import arrays computed elsewhere (another model's layers, say) into a feature store, aligned by item id.

An imported array is (N, ...) with one row per item of the split, in the store's item order
(``store.ids(split)``), so it can be compared with extracted arrays (``diffprobe cka stores``).
Rows come either in that order already, or with an ids file (one item id per line, in the source's
row order) that says which item each row belongs to; items without a row become NaN rows, as failed
extractions do. Every check runs before anything is written.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from diffprobe._version import __version__
from diffprobe.errors import ConfigError, StoreError, StoreKeyError
from diffprobe.registry import Registry
from diffprobe.store.layout import FeatureKey
from diffprobe.store.store import FeatureStore, open_store

log = logging.getLogger(__name__)

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_\-]*")


def _read_npy(path: Path, dataset: str | None) -> np.ndarray:
    if dataset is not None:
        raise ConfigError(f"expected no dataset name for a .npy file, got {dataset!r}")
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as e:
        raise StoreError(f"cannot read {path} as a numeric .npy array: {e}") from None


def choose(value: str | None, valid: Sequence[str], what: str, where: str, error: type[Exception] = ConfigError) -> str:
    """``value`` if it is one of ``valid``; None picks the only one; else an error listing the choices."""
    if value is None:
        if len(valid) != 1:
            raise error(f"expected --{what}: {where} holds {len(valid)} {what}s; valid: {', '.join(valid) or 'none'}")
        return valid[0]
    if value not in valid:
        raise error(f"expected a {what} of {where}, got {value!r}; valid: {', '.join(valid) or 'none'}")
    return value


def _read_h5(path: Path, dataset: str | None) -> np.ndarray:
    import h5py

    with h5py.File(path, "r") as f:
        names: list[str] = []
        f.visititems(lambda n, obj: names.append(n) if isinstance(obj, h5py.Dataset) else None)
        return np.asarray(f[choose(dataset, names, "dataset", str(path))][()])


#: file suffix → reader(path, dataset) → (N, ...) array
SOURCE_READERS: Registry[Callable[[Path, str | None], np.ndarray]] = Registry("array file suffix", error=ConfigError)
SOURCE_READERS.register(".npy", _read_npy)
SOURCE_READERS.register(".h5", _read_h5)
SOURCE_READERS.register(".hdf5", _read_h5)


def read_source(path: str | Path, dataset: str | None = None) -> np.ndarray:
    """The (N, ...) array in ``path`` (.npy memory-mapped; .h5/.hdf5 by dataset name)."""
    p = Path(path)
    if p.suffix.lower() not in SOURCE_READERS:
        raise ConfigError(f"expected a source file ending in {', '.join(SOURCE_READERS)}, got {p.name!r}")
    reader = SOURCE_READERS.get(p.suffix.lower())
    if not p.is_file():
        raise StoreError(f"source file not found: {p}")
    data = reader(p, dataset)
    if data.ndim == 0 or data.shape[0] == 0:
        raise StoreError(f"expected an (N, ...) array with N ≥ 1 in {p}, got shape {data.shape}")
    if not (np.issubdtype(data.dtype, np.floating) or np.issubdtype(data.dtype, np.integer) or data.dtype == bool):
        raise StoreError(f"expected numeric features in {p}, got dtype {data.dtype}")
    return data if data.ndim > 1 else data.reshape(-1, 1)


def read_ids(path: str | Path) -> list[str]:
    """Item ids, one per non-empty line (surrounding whitespace stripped)."""
    p = Path(path)
    if not p.is_file():
        raise StoreError(f"ids file not found: {p}")
    return [line.strip() for line in p.read_text().splitlines() if line.strip()]


def align_rows(n_rows: int, src_ids: Sequence[str], store_ids: Sequence[str], ids_file: str = "the ids file") -> np.ndarray:
    """(n_rows,) index into the store's items of each source row; errors on length, duplicates, unknown ids."""
    if len(src_ids) != n_rows:
        raise StoreError(
            f"expected one id per source row in {ids_file}: the source has {n_rows} rows, the file {len(src_ids)} ids"
        )
    pos = {str(v): i for i, v in enumerate(store_ids)}
    if len(set(src_ids)) != len(src_ids):
        dup = next(v for v, c in Counter(src_ids).items() if c > 1)
        raise StoreError(f"{ids_file} repeats {len(src_ids) - len(set(src_ids))} ids (e.g. {dup!r}); each item may have one row")
    unknown = [v for v in src_ids if v not in pos]
    if unknown:
        eg = ", ".join(repr(v) for v in unknown[:3])
        raise StoreKeyError(
            f"{len(unknown)} of {len(src_ids)} ids in {ids_file} are not items of the split (e.g. {eg}); "
            f"ids are the store's item ids (relative image paths, e.g. {next(iter(pos), '')!r})"
        )
    return np.array([pos[v] for v in src_ids], dtype=np.int64)


@dataclass(frozen=True)
class ImportReport:
    """What was written: array name, split, shape and dtype, and how many items got NaN rows."""

    name: str
    split: str
    shape: tuple[int, ...]
    dtype: str
    n_missing: int
    source: str

    def summary(self, src: str | Path, store: str | Path) -> str:
        """What ``store import`` prints."""
        note = f"; {self.n_missing} items without a row are NaN" if self.n_missing else ""
        return f"imported {src} into {store} as {self.name!r} (split {self.split!r}, shape {self.shape}, {self.dtype}){note}"


def import_array(
    store: FeatureStore | str | Path, src: str | Path, *, name: str, split: str | None = None, ids: str | Path | None = None,
    dataset: str | None = None, overwrite: bool = False,
) -> ImportReport:
    """Add the (N, ...) array in ``src`` (.npy / .h5) to ``store`` (path or store opened with mode="a").

    Without ``ids`` the source must have one row per item of ``split``, in the store's order. With
    ``ids`` (a text file, one item id per line, in the source's row order) rows are placed by id;
    store items absent from the file get NaN rows (CKA and probes skip them). float64 and integer
    data are stored as float32; float16/float32 are kept.

    Raises:
        ConfigError: bad name, file type or dataset.  StoreKeyError: unknown split or ids.
        StoreError: existing name (without overwrite), length mismatch, repeated ids, unreadable source.
    """
    if not _NAME.fullmatch(name) or FeatureKey.is_key(name):
        raise ConfigError(
            f"expected an array name of letters, digits, '_' and '-' that is not a feature key like t0090_b24_p2, got {name!r}"
        )
    if isinstance(store, (str, Path)):
        with open_store(store, mode="a") as opened:
            return _import(opened, src, name, split, ids, dataset, overwrite)
    return _import(store, src, name, split, ids, dataset, overwrite)


def _import(s: FeatureStore, src: str | Path, name: str, split: str | None, ids: str | Path | None, dataset: str | None,
            overwrite: bool) -> ImportReport:  # fmt: skip
    split = choose(split, list(s.splits), "split", "the store", StoreKeyError)
    if name in s.keys(split) and not overwrite:
        raise StoreError(f"array {name!r} already exists in split {split!r}; choose another --name or pass --overwrite")
    data = read_source(src, dataset)
    store_ids = [str(v) for v in s.ids(split)]
    n = len(store_ids)
    if ids is None:
        if data.shape[0] != n:
            raise StoreError(
                f"expected one row per item of split {split!r}: {Path(src).name} has {data.shape[0]} rows, the split {n} items; "
                "pass --ids FILE (one item id per line, in the source's row order) to align them"
            )
        target = None
    else:
        target = align_rows(data.shape[0], read_ids(ids), store_ids, str(ids))
    dtype = data.dtype if data.dtype in (np.float16, np.float32) else np.dtype(np.float32)
    if target is None or (len(target) == n and bool(np.all(target == np.arange(n)))):
        out, missing = np.asarray(data, dtype=dtype), 0
    else:
        out = np.full((n, *data.shape[1:]), np.nan, dtype=dtype)
        out[target] = data
        missing = n - len(target)
        if missing:
            log.warning("%d of %d items of split %r have no row in %s; their rows are NaN", missing, n, split, src)
    if int(np.isfinite(out.reshape(n, -1)).all(1).sum()) < n - missing:
        log.warning("%s holds NaN/inf values in some rows; CKA excludes such items", src)
    attrs = {"source": str(src), "dataset": dataset, "ids_file": str(ids) if ids else None, "n_missing": missing,
             "imported_with": f"diffprobe {__version__}"}
    s.write_array(split, name, out, attrs=attrs, overwrite=overwrite)
    log.info("imported %s as %r into split %r: shape %s, %s", src, name, split, out.shape, out.dtype)
    return ImportReport(name, split, tuple(out.shape), str(out.dtype), missing, str(src))
