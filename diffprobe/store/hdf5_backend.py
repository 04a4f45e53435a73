"""HDF5 single-file store behind the same interface, for single-writer runs and as an export.

Markers are JSON strings in the attributes of ``/_progress/<split>``, written after the unit's data
and flushed. HDF5 is not safe for concurrent writers, and a process killed with SIGKILL mid-write can
leave the file unreadable: use the Zarr format for long or distributed runs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from diffprobe.errors import StoreCorruptError, StoreError
from diffprobe.store.backend import Backend
from diffprobe.store.layout import PROGRESS_GROUP, ROOT_ATTR
from diffprobe.store.metadata import ArrayMeta

_STR = h5py.string_dtype("utf-8")
#: the first bytes of every HDF5 file
_MAGIC = b"\x89HDF\r\n\x1a\n"


def _get_json(attrs: h5py.AttributeManager) -> dict[str, Any]:
    raw = attrs.get(ROOT_ATTR)
    return json.loads(raw) if raw is not None else {}


class HDF5Backend(Backend):
    format = "hdf5"
    title = "HDF5"
    suffixes = (".h5", ".hdf5")
    atomic_publish = True  # h5py writes in place: a killed writer could leave the file torn

    @classmethod
    def holds_store(cls, path: Path) -> bool:
        try:
            with open(path, "rb") as f:
                head = f.read(4 << 20)
        except OSError:
            return False
        if not head.startswith(_MAGIC):
            return False
        try:
            with h5py.File(path, "r") as f:
                return ROOT_ATTR in f.attrs
        except OSError:  # damaged: recognisably ours if its root attribute's name survives
            return ROOT_ATTR.encode() in head

    def __init__(self, path: Path, mode: str) -> None:
        super().__init__(path, mode)
        if mode == "w" and (path.exists() or path.is_symlink()):
            from diffprobe.store.ownership import check_replaceable

            check_replaceable(path)
        if mode in ("r", "a") and not path.is_file():
            raise StoreError(f"no store at {path} (expected an HDF5 file)")
        try:
            self.f = h5py.File(path, {"r": "r", "a": "r+", "w": "w"}[mode])
        except OSError as e:
            raise StoreError(f"cannot open {path} as an HDF5 store: {e}") from None
        if mode == "w":
            self.f.require_group(PROGRESS_GROUP)

    def root_attrs(self) -> dict[str, Any]:
        return _get_json(self.f.attrs)

    def update_root_attrs(self, attrs: dict[str, Any]) -> None:
        self._check_writable()
        cur = self.root_attrs()
        cur.update(attrs)
        self.f.attrs[ROOT_ATTR] = json.dumps(cur)

    def groups(self) -> list[str]:
        return sorted(k for k, v in self.f.items() if isinstance(v, h5py.Group) and k != PROGRESS_GROUP)

    def _group(self, group: str) -> h5py.Group:
        g = self.f.get(group)
        if not isinstance(g, h5py.Group):
            raise StoreError(f"store {self.path} has no split {group!r}; splits: {', '.join(self.groups())}")
        return g

    def create_group(self, group: str, attrs: dict[str, Any]) -> None:
        self._check_writable()
        if group in self.f:
            del self.f[group]
        g = self.f.create_group(group)
        g.attrs[ROOT_ATTR] = json.dumps(attrs)
        self.f.require_group(PROGRESS_GROUP).require_group(group)

    def group_attrs(self, group: str) -> dict[str, Any]:
        return _get_json(self._group(group).attrs)

    def update_group_attrs(self, group: str, attrs: dict[str, Any]) -> None:
        self._check_writable()
        g = self._group(group)
        cur = _get_json(g.attrs)
        cur.update(attrs)
        g.attrs[ROOT_ATTR] = json.dumps(cur)

    def arrays(self, group: str) -> list[str]:
        return sorted(k for k, v in self._group(group).items() if isinstance(v, h5py.Dataset))

    def _array(self, group: str, name: str) -> h5py.Dataset:
        a = self._group(group).get(name)
        if not isinstance(a, h5py.Dataset):
            raise KeyError(name)
        return a

    def create_array(self, group, name, shape, dtype, chunk_rows, shard_rows, dims, attrs) -> None:  # type: ignore[override]
        self._check_writable()
        g = self._group(group)
        if name in g:
            del g[name]
        dt = _STR if dtype == "str" else np.dtype(dtype)
        fill = None
        if dtype != "str":
            kind = np.dtype(dtype).kind
            fill = np.nan if kind == "f" else (-1 if kind == "i" else 0)
        chunks = (max(1, min(chunk_rows, shape[0])), *shape[1:]) if shape[0] else None
        # fletcher32: every chunk carries a checksum, so a changed chunk fails to read (numbers only:
        # HDF5 does not checksum variable-length strings).
        check = chunks is not None and dtype != "str"
        ds = g.create_dataset(name, shape=shape, dtype=dt, chunks=chunks, fillvalue=fill, fletcher32=check)
        ds.attrs[ROOT_ATTR] = json.dumps(attrs)
        ds.attrs["dimension_names"] = json.dumps(list(dims))

    def delete_array(self, group: str, name: str) -> None:
        self._check_writable()
        del self._group(group)[name]

    def array_info(self, group: str, name: str) -> tuple[tuple[int, ...], np.dtype, dict[str, Any]]:
        a = self._array(group, name)
        dt = np.dtype(str) if h5py.check_string_dtype(a.dtype) else a.dtype
        return tuple(a.shape), dt, _get_json(a.attrs)

    def array_meta(self, group: str, name: str) -> ArrayMeta:
        try:
            a = self._array(group, name)
            string = h5py.check_string_dtype(a.dtype) is not None
            attrs = _get_json(a.attrs)
            return ArrayMeta(tuple(a.shape), "string" if string else a.dtype.name, tuple(a.chunks or a.shape), None, attrs,
                             self.array_dims(group, name))  # fmt: skip
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise StoreCorruptError(f"the metadata of {group}/{name} in {self.path} cannot be read ({type(e).__name__}: {e})") from None

    def array_dims(self, group: str, name: str) -> tuple[str, ...]:
        raw = self._array(group, name).attrs.get("dimension_names")
        return tuple(json.loads(raw)) if raw is not None else ()

    def write_rows(self, group: str, name: str, start: int, data: np.ndarray) -> None:
        self._check_writable()
        a = self._array(group, name)
        a[start : start + len(data)] = data.astype(object) if data.dtype.kind in "UT" else data

    def _read_rows(self, group: str, name: str, sel: slice | np.ndarray | None) -> np.ndarray:
        a = self._array(group, name)
        if h5py.check_string_dtype(a.dtype):
            a = a.asstr()
        if sel is None:
            out = a[()]
        elif isinstance(sel, slice):
            out = a[sel]
        else:
            idx = np.asarray(sel)
            if idx.dtype == bool:
                idx = np.flatnonzero(idx)
            uniq, inv = np.unique(idx, return_inverse=True)  # h5py wants increasing, unique indices
            out = a[uniq][inv] if len(uniq) else a[:0]
        out = np.asarray(out)
        return out.astype(str) if out.dtype.kind == "O" else out

    def _lazy_source(self, group: str, name: str) -> tuple[Any, tuple[int, ...]]:
        a = self._array(group, name)
        return a, a.chunks or a.shape

    def is_damage(self, error: Exception) -> bool:
        # "Can't read data (data error detected by Fletcher32 checksum)"; a damaged compressed chunk
        text = str(error).lower()
        return isinstance(error, OSError) and any(w in text for w in ("checksum", "can't read data", "filter"))

    def array_nbytes_stored(self, group: str, name: str) -> int:
        return int(self._array(group, name).id.get_storage_size())

    def chunk_rows(self, group: str, name: str) -> int:
        a = self._array(group, name)
        return int(a.chunks[0]) if a.chunks else max(1, int(a.shape[0]))

    def chunk_checksum(self, group: str, name: str) -> str | None:
        return "fletcher32" if self._array(group, name).fletcher32 else None

    def write_marker(self, group: str, unit: int, payload: dict[str, Any]) -> None:
        self._check_writable()
        self.f.require_group(PROGRESS_GROUP).require_group(group).attrs[f"unit-{unit:06d}"] = json.dumps(payload)
        self.f.flush()

    def read_markers(self, group: str) -> dict[int, dict[str, Any]]:
        g = self.f.get(f"{PROGRESS_GROUP}/{group}")
        if g is None:
            return {}
        return {int(k.split("-")[1]): json.loads(v) for k, v in g.attrs.items()}

    def delete_marker(self, group: str, unit: int) -> None:
        self._check_writable()
        g = self.f.get(f"{PROGRESS_GROUP}/{group}")
        if g is not None and f"unit-{unit:06d}" in g.attrs:
            del g.attrs[f"unit-{unit:06d}"]
            self.f.flush()

    def clear_markers(self, group: str) -> None:
        self._check_writable()
        g = self.f.require_group(PROGRESS_GROUP).require_group(group)
        for k in list(g.attrs):
            del g.attrs[k]

    def flush(self) -> None:
        if self.mode != "r":
            self.f.flush()

    def close(self) -> None:
        try:
            self.f.close()
        except Exception:  # closing twice or after a failed open
            pass
