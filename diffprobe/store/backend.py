"""The storage interface shared by the Zarr and HDF5 backends.

Backends know nothing about features: they store groups with JSON attributes, N-first arrays
written in row ranges, and small per-unit done markers. :class:`~diffprobe.store.store.FeatureStore`
builds the feature-store semantics on top.
"""

from __future__ import annotations

import abc
from pathlib import Path
from typing import Any

import numpy as np

from diffprobe.errors import StoreCorruptError, StoreError
from diffprobe.registry import Registry
from diffprobe.store.metadata import ArrayMeta


class Backend(abc.ABC):
    """One store on disk. ``mode``: "r" read-only, "a" read/write, "w" create (replacing).

    A backend says what it can do (capabilities, class attributes) and callers ask it, instead of
    testing its format:

    Attributes:
        format: its name in the registry (``zarr``, ``hdf5``).
        suffixes: path endings that select it (lower case); a backend with none is the default for
            any other path (a directory).
        concurrent_writers: several processes and threads may write units at once (each unit owns
            whole shards): ``--workers``, ``--scheduler``, ``--shard`` and parallel writer threads.
        atomic_publish: extraction writes a resumable working store beside it and publishes the
            finished store in one rename (a single file that a killed writer must never leave torn).
        spills_pieces: it writes a shard whole, so a unit held a piece at a time puts its full pieces
            aside in :meth:`spill_folder` until its end; else they go into the arrays at once.
    """

    format: str
    #: the format's name in messages ("Zarr", "HDF5")
    title: str = ""
    suffixes: tuple[str, ...] = ()
    concurrent_writers: bool = False
    atomic_publish: bool = False
    spills_pieces: bool = False

    def __init__(self, path: Path, mode: str) -> None:
        self.path = path
        self.mode = mode

    @classmethod
    def holds_store(cls, path: Path) -> bool:
        """Whether ``path`` is a diffprobe store of this format — readable, or damaged but recognisably
        one (what :mod:`~diffprobe.store.ownership` may replace). Cheap: reads metadata only."""
        return False

    def _check_writable(self) -> None:
        if self.mode == "r":
            raise StoreError(f"store {self.path} is open read-only; open it with mode='a' to modify it")

    # groups and attributes
    @abc.abstractmethod
    def root_attrs(self) -> dict[str, Any]: ...

    @abc.abstractmethod
    def update_root_attrs(self, attrs: dict[str, Any]) -> None: ...

    @abc.abstractmethod
    def groups(self) -> list[str]: ...

    @abc.abstractmethod
    def create_group(self, group: str, attrs: dict[str, Any]) -> None: ...

    @abc.abstractmethod
    def group_attrs(self, group: str) -> dict[str, Any]: ...

    @abc.abstractmethod
    def update_group_attrs(self, group: str, attrs: dict[str, Any]) -> None: ...

    # arrays
    @abc.abstractmethod
    def arrays(self, group: str) -> list[str]: ...

    @abc.abstractmethod
    def create_array(
        self,
        group: str,
        name: str,
        shape: tuple[int, ...],
        dtype: str,
        chunk_rows: int,
        shard_rows: int,
        dims: tuple[str, ...],
        attrs: dict[str, Any],
    ) -> None:
        """Create an N-first array, chunked (and sharded, where supported) along N; floats fill with NaN."""

    @abc.abstractmethod
    def delete_array(self, group: str, name: str) -> None: ...

    @abc.abstractmethod
    def array_info(self, group: str, name: str) -> tuple[tuple[int, ...], np.dtype, dict[str, Any]]:
        """(shape, dtype, attrs) of an array."""

    @abc.abstractmethod
    def array_meta(self, group: str, name: str) -> ArrayMeta:
        """The array's metadata as recorded, unchecked (see :mod:`~diffprobe.store.metadata`), read
        without trusting it.

        Raises:
            StoreCorruptError: the metadata cannot be read at all (truncated, not JSON, a missing field).
        """

    def replace_metadata(self, group: str, name: str, shape: tuple[int, ...], dtype: str, chunk_rows: int, shard_rows: int,
                         dims: tuple[str, ...], attrs: dict[str, Any]) -> bool:  # fmt: skip
        """Write an array's metadata again as :meth:`create_array` would, leaving its chunks as they
        are (``store repair``); False where the backend cannot."""
        return False

    def replace_group_attrs(self, group: str, attrs: dict[str, Any]) -> bool:
        """Write a group whose metadata cannot be read again, with ``attrs`` (``store repair``);
        False where the backend cannot."""
        return False

    @abc.abstractmethod
    def array_dims(self, group: str, name: str) -> tuple[str, ...]:
        """Dimension names of an array (``item`` first)."""

    @abc.abstractmethod
    def write_rows(self, group: str, name: str, start: int, data: np.ndarray) -> None:
        """Write ``data`` into rows [start, start + len(data))."""

    def read_rows(self, group: str, name: str, sel: slice | np.ndarray | None = None) -> np.ndarray:
        """Rows ``sel`` (all when None) of an array.

        Raises:
            StoreCorruptError: a chunk fails its checksum or cannot be decoded.
        """
        try:
            return self._read_rows(group, name, sel)
        except Exception as e:
            if self.is_damage(e):
                raise self.damage_error(group, name, e) from e
            raise

    def lazy(self, group: str, name: str) -> Any:
        """A dask array over the stored array, chunked along N (a damaged chunk raises
        :class:`StoreCorruptError` when it is computed)."""
        import dask.array as da

        array, chunks = self._lazy_source(group, name)
        return da.from_array(_Checked(self, group, name, array), chunks=chunks, asarray=True)

    @abc.abstractmethod
    def _read_rows(self, group: str, name: str, sel: slice | np.ndarray | None) -> np.ndarray: ...

    @abc.abstractmethod
    def _lazy_source(self, group: str, name: str) -> tuple[Any, tuple[int, ...]]:
        """(an indexable array for dask, its chunk shape)."""

    def is_damage(self, error: Exception) -> bool:
        """Whether ``error``, raised reading a chunk, means the chunk's bytes are damaged."""
        return False

    def damage_error(self, group: str, name: str, error: Exception) -> StoreCorruptError:
        """The error a damaged chunk becomes: what failed and what to do."""
        first = str(error).splitlines()[0][:160] if str(error) else type(error).__name__
        return StoreCorruptError(
            f"a chunk of {group}/{name} in {self.path} fails to read ({first}): the store changed on disk after it "
            f"was written. `diffprobe store verify --deep {self.path}` lists the damaged units; "
            f"`diffprobe store repair {self.path}` recomputes them"
        )

    @abc.abstractmethod
    def array_nbytes_stored(self, group: str, name: str) -> int: ...

    @abc.abstractmethod
    def chunk_rows(self, group: str, name: str) -> int:
        """Rows (along N) of one chunk of the array: the unit of storage that can be damaged or moved."""

    @abc.abstractmethod
    def chunk_checksum(self, group: str, name: str) -> str | None:
        """The checksum every chunk of the array carries (``crc32c``, ``fletcher32``), or None."""

    # progress markers
    @abc.abstractmethod
    def write_marker(self, group: str, unit: int, payload: dict[str, Any]) -> None:
        """Record unit ``unit`` of ``group`` as done (atomically, after its data)."""

    @abc.abstractmethod
    def read_markers(self, group: str) -> dict[int, dict[str, Any]]: ...

    @abc.abstractmethod
    def clear_markers(self, group: str) -> None: ...

    @abc.abstractmethod
    def delete_marker(self, group: str, unit: int) -> None:
        """Mark unit ``unit`` of ``group`` not done (its rows will be recomputed)."""

    def spill_folder(self, group: str) -> Path | None:
        """Where a unit held a piece at a time keeps its full pieces until its end (a
        :class:`~diffprobe.store.spill.Spill`), for a backend that :attr:`spills_pieces`; None: pieces
        are written into the arrays at once (a backend that writes rows in place)."""
        return None

    def consolidate(self) -> None:
        """Write consolidated metadata for fast external readers (no-op where not applicable)."""

    def flush(self) -> None:
        """Make everything written so far durable (no-op where writes are already durable)."""

    def close(self) -> None:
        """Release file handles."""

    def nbytes_on_disk(self) -> int:
        p = self.path
        if p.is_file():
            return p.stat().st_size
        return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())


class _Checked:
    """An array for ``dask.array.from_array`` whose reads turn chunk damage into :class:`StoreCorruptError`."""

    def __init__(self, backend: Backend, group: str, name: str, array: Any) -> None:
        self.backend, self.group, self.name, self.array = backend, group, name, array
        self.shape, self.dtype, self.ndim = array.shape, array.dtype, len(array.shape)

    def __getitem__(self, index: Any) -> Any:
        try:
            return self.array[index]
        except Exception as e:
            if self.backend.is_damage(e):
                raise self.backend.damage_error(self.group, self.name, e) from e
            raise


#: Store backends by format name (a new backend: its module and one line here).
BACKENDS: Registry[type[Backend]] = Registry("store format", error=StoreError)
BACKENDS.register_lazy("zarr", "diffprobe.store.zarr_backend:ZarrBackend")
BACKENDS.register_lazy("hdf5", "diffprobe.store.hdf5_backend:HDF5Backend")


def backend_for_path(path: str | Path) -> type[Backend]:
    """The backend a store at ``path`` uses: the one whose :attr:`~Backend.suffixes` end the name
    (``.h5``/``.hdf5`` → HDF5), else the default one, which has none (a directory → Zarr)."""
    name = str(path).lower()
    for cls in BACKENDS.values():
        if cls.suffixes and name.endswith(cls.suffixes):
            return cls
    default = [cls for cls in BACKENDS.values() if not cls.suffixes]
    if len(default) != 1:
        raise StoreError(f"expected one store backend for directories, got {[c.format for c in default]}")
    return default[0]


def format_for_path(path: str | Path) -> str:
    """The format name of :func:`backend_for_path`."""
    return backend_for_path(path).format
