"""Zarr format 3 directory store: arrays sharded along N so each work unit owns whole shards.

Done markers are small JSON files under ``_progress/<split>/``, written to a temporary name and
renamed into place (atomic on POSIX), after the unit's shards.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any, cast

import numpy as np
import zarr
from zarr.codecs import Crc32cCodec, ZstdCodec

from diffprobe.errors import StoreCorruptError, StoreError
from diffprobe.store import zarr_meta
from diffprobe.store.backend import Backend
from diffprobe.store.layout import PROGRESS_GROUP, ROOT_ATTR
from diffprobe.store.metadata import ArrayMeta


def _fill(dtype: np.dtype) -> Any:
    if dtype.kind == "f":
        return np.nan
    if dtype.kind == "b":
        return False
    if dtype.kind in "iu":
        return -1 if dtype.kind == "i" else 0
    return ""


def _no_empty_chunk(array: zarr.Array, start: int, data: np.ndarray) -> bool:
    """Whether each chunk that rows [start, start + len(data)) of a NaN-filled ``array`` touch gets
    a value that is not NaN from ``data`` (its first one is checked), so none can equal the fill."""
    if data.dtype.kind != "f" or data.size == 0 or not np.isnan(array.fill_value):
        return False
    rows = array.chunks[0]
    first = np.arange(-(start % rows), len(data), rows).clip(0)  # each touched chunk's first row in data
    return not np.isnan(data.reshape(len(data), -1)[first, 0]).any()


class ZarrBackend(Backend):
    format = "zarr"
    title = "Zarr"
    spills_pieces = True  # a shard is written whole
    concurrent_writers = True  # each unit owns whole shards and its own done marker
    #: crc32c on every chunk of new arrays (``benchmarks/checksum_cost.py`` turns it off to measure it)
    chunk_checksums = True

    @classmethod
    def holds_store(cls, path: Path) -> bool:
        return zarr_meta.holds_store(path)

    def __init__(self, path: Path, mode: str) -> None:
        super().__init__(path, mode)
        if mode == "w" and (path.exists() or path.is_symlink()):
            from diffprobe.store.ownership import remove_store

            remove_store(path)
        if mode in ("r", "a") and not (path / "zarr.json").is_file():
            raise StoreError(f"no store at {path} (expected a Zarr v3 directory with zarr.json)")
        try:
            # Never trust consolidated metadata here: it can lag behind arrays added later.
            self.root = zarr.open_group(str(path), mode="r" if mode == "r" else "a", zarr_format=3, use_consolidated=False)
        except Exception as e:  # zarr raises several types for a corrupt hierarchy
            raise StoreError(f"cannot open {path} as a Zarr store: {e}") from None
        if mode == "w":
            self.root.create_group(PROGRESS_GROUP)

    def root_attrs(self) -> dict[str, Any]:
        return dict(cast(dict[str, Any], self.root.attrs.get(ROOT_ATTR, {})))

    def update_root_attrs(self, attrs: dict[str, Any]) -> None:
        self._check_writable()
        cur = self.root_attrs()
        cur.update(attrs)
        self.root.attrs[ROOT_ATTR] = cur

    def groups(self) -> list[str]:
        return zarr_meta.children(self.path, "group")

    def _group(self, group: str) -> zarr.Group:
        if group not in self.groups():
            raise StoreError(f"store {self.path} has no split {group!r}; splits: {', '.join(self.groups())}")
        try:
            g = self.root[group]
        except Exception as e:  # zarr raises several types for damaged metadata
            raise StoreCorruptError(f"the metadata of split {group!r} in {self.path} cannot be read ({type(e).__name__}: {e}); "
                                    f"`diffprobe store verify {self.path}` reports it") from None  # fmt: skip
        if not isinstance(g, zarr.Group):
            raise StoreCorruptError(f"{group!r} in {self.path} is not a split (a group); `diffprobe store verify {self.path}` reports it")
        return g

    def create_group(self, group: str, attrs: dict[str, Any]) -> None:
        self._check_writable()
        g = self.root.create_group(group, overwrite=True)
        g.attrs[ROOT_ATTR] = attrs
        self.root.require_group(PROGRESS_GROUP)
        (self.path / PROGRESS_GROUP / group).mkdir(parents=True, exist_ok=True)

    def group_attrs(self, group: str) -> dict[str, Any]:
        return dict(cast(dict[str, Any], self._group(group).attrs.get(ROOT_ATTR, {})))

    def update_group_attrs(self, group: str, attrs: dict[str, Any]) -> None:
        self._check_writable()
        g = self._group(group)
        cur = dict(cast(dict[str, Any], g.attrs.get(ROOT_ATTR, {})))
        cur.update(attrs)
        g.attrs[ROOT_ATTR] = cur

    def arrays(self, group: str) -> list[str]:
        if group not in self.groups():
            raise StoreError(f"store {self.path} has no split {group!r}; splits: {', '.join(self.groups())}")
        return zarr_meta.children(self.path / group, "array")

    def _array(self, group: str, name: str) -> zarr.Array:
        g = self._group(group)
        try:
            a = g.get(name)
        except Exception as e:  # zarr raises several types for damaged metadata
            raise StoreCorruptError(f"the metadata of {group}/{name} in {self.path} cannot be read ({type(e).__name__}: {e}); "
                                    f"`diffprobe store verify {self.path}` reports it") from None  # fmt: skip
        if not isinstance(a, zarr.Array):
            raise KeyError(name)
        return a

    def array_meta(self, group: str, name: str) -> ArrayMeta:
        return zarr_meta.array_meta(self.path, group, name)

    def replace_metadata(self, group, name, shape, dtype, chunk_rows, shard_rows, dims, attrs) -> bool:  # type: ignore[override]
        self._check_writable()
        with tempfile.TemporaryDirectory() as tmp:  # the same call as extraction's, into an empty store
            scratch = ZarrBackend(Path(tmp) / "scratch.zarr", "w")
            scratch.create_group(group, {})
            scratch.create_array(group, name, shape, dtype, chunk_rows, shard_rows, dims, attrs)
            zarr_meta.install(Path(tmp) / "scratch.zarr" / group / name, self.path / group / name)
        return True

    def replace_group_attrs(self, group: str, attrs: dict[str, Any]) -> bool:
        self._check_writable()
        zarr_meta.write_group(self.path / group, attrs)
        return True

    def create_array(self, group, name, shape, dtype, chunk_rows, shard_rows, dims, attrs) -> None:  # type: ignore[override]
        self._check_writable()
        dt = np.dtype(str) if dtype == "str" else np.dtype(dtype)
        rest = tuple(shape[1:])
        # zarr's default compressor, then a crc32c of every chunk: a changed chunk fails to read.
        codecs = (ZstdCodec(level=0, checksum=False), Crc32cCodec()) if self.chunk_checksums else (ZstdCodec(level=0, checksum=False),)
        kw: dict[str, Any] = {"compressors": codecs}
        if shard_rows > chunk_rows:
            kw["shards"] = (shard_rows, *rest)
        self._group(group).create_array(
            name,
            shape=shape,
            dtype=str if dtype == "str" else dt,
            chunks=(chunk_rows, *rest),
            fill_value=_fill(dt),
            dimension_names=dims,
            attributes={ROOT_ATTR: attrs},
            overwrite=True,
            **kw,
        )

    def delete_array(self, group: str, name: str) -> None:
        self._check_writable()
        del self._group(group)[name]

    def array_info(self, group: str, name: str) -> tuple[tuple[int, ...], np.dtype, dict[str, Any]]:
        a = self._array(group, name)
        dt = np.dtype(str) if a.dtype.kind in "TOU" else np.dtype(a.dtype)
        return tuple(a.shape), dt, dict(cast(dict[str, Any], a.attrs.get(ROOT_ATTR, {})))

    def array_dims(self, group: str, name: str) -> tuple[str, ...]:
        a = self._array(group, name)
        return tuple(str(d) for d in (a.metadata.dimension_names or ()))  # type: ignore[union-attr]

    def write_rows(self, group: str, name: str, start: int, data: np.ndarray) -> None:
        self._check_writable()
        a = self._array(group, name)
        if _no_empty_chunk(a, start, data):
            # zarr leaves out chunks equal to the fill value, comparing each with it first — on its
            # one event-loop thread, the slowest step of writing float16 maps. No chunk here can be
            # all NaN, so skipping the comparison writes the same bytes.
            a = a.with_config({"write_empty_chunks": True})
        a[start : start + len(data)] = data

    def _read_rows(self, group: str, name: str, sel: slice | np.ndarray | None) -> np.ndarray:
        a = self._array(group, name)
        if sel is None:
            raw: Any = a[...]
        elif isinstance(sel, slice):
            raw = a[sel]
        else:
            raw = a.get_orthogonal_selection((np.asarray(sel),))
        out = np.asarray(raw)
        return out.astype(object).astype(str) if out.dtype.kind in "TO" else out

    def _lazy_source(self, group: str, name: str) -> tuple[Any, tuple[int, ...]]:
        a = self._array(group, name)
        return a, a.shards or a.chunks

    def is_damage(self, error: Exception) -> bool:
        # crc32c: "Stored and computed checksum do not match"; a damaged zstd frame (stores without
        # crc32c): numcodecs' decompression errors
        text = str(error).lower()
        return isinstance(error, (ValueError, RuntimeError)) and any(w in text for w in ("checksum", "zstd", "decompress", "corrupt"))

    def array_nbytes_stored(self, group: str, name: str) -> int:
        return int(self._array(group, name).nbytes_stored())

    def chunk_rows(self, group: str, name: str) -> int:
        return int(self._array(group, name).chunks[0])

    def chunk_checksum(self, group: str, name: str) -> str | None:
        meta: Any = self._array(group, name).metadata.to_dict()
        codecs = list(meta.get("codecs", ()))
        inner = [c for c in codecs if c.get("name") == "sharding_indexed"]
        if inner:  # the shard index has its own crc32c; what matters is the chunks'
            codecs = list(inner[0]["configuration"]["codecs"])
        return "crc32c" if any(c.get("name") == "crc32c" for c in codecs) else None

    def consolidate(self) -> None:
        self._check_writable()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            zarr.consolidate_metadata(str(self.path))

    def _marker_dir(self, group: str) -> Path:
        return self.path / PROGRESS_GROUP / group

    def spill_folder(self, group: str) -> Path:
        # beside the done markers: the store's own filesystem (which has room for the unit's shards),
        # and where a killed run's temporaries are looked for (``remove_stale_temporaries``)
        return self._marker_dir(group)

    def write_marker(self, group: str, unit: int, payload: dict[str, Any]) -> None:
        self._check_writable()
        d = self._marker_dir(group)
        d.mkdir(parents=True, exist_ok=True)
        final = d / f"unit-{unit:06d}.json"
        tmp = d / f".unit-{unit:06d}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            json.dump(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)

    def read_markers(self, group: str) -> dict[int, dict[str, Any]]:
        d = self._marker_dir(group)
        out: dict[int, dict[str, Any]] = {}
        if d.is_dir():
            for f in d.glob("unit-*.json"):
                try:
                    out[int(f.stem.split("-")[1])] = json.loads(f.read_text())
                except (ValueError, json.JSONDecodeError):
                    continue  # a torn marker counts as not done
        return out

    def delete_marker(self, group: str, unit: int) -> None:
        self._check_writable()
        (self._marker_dir(group) / f"unit-{unit:06d}.json").unlink(missing_ok=True)

    def clear_markers(self, group: str) -> None:
        self._check_writable()
        shutil.rmtree(self._marker_dir(group), ignore_errors=True)
        self._marker_dir(group).mkdir(parents=True, exist_ok=True)
