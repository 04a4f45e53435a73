"""Work units, their in-memory buffers, and writing a finished unit (data first, marker last)."""

from __future__ import annotations

import datetime as _dt
import logging
import os
import queue
import socket
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from diffprobe.store.digests import DIGEST, ROW_PRINT, Digest, digest, unit_digests
from diffprobe.store.layout import MAX_UNIT_BYTES, FeatureKey
from diffprobe.store.spill import Spill
from diffprobe.store.store import FeatureStore

if TYPE_CHECKING:
    from diffprobe.store.backend import Backend

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class UnitTask:
    """Compute ``keys`` for items [start, stop) of ``split``; ``done_keys`` are already stored."""

    split: str
    unit: int
    start: int
    stop: int
    keys: tuple[FeatureKey, ...]
    done_keys: tuple[str, ...] = ()
    #: the digests the unit's marker already records (for ``done_keys``), kept when it is extended
    done_digests: Mapping[str, str] = field(default_factory=dict)
    #: the row prints it records (see :func:`~diffprobe.store.digests.row_print`), kept likewise
    done_prints: Mapping[str, Any] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return self.stop - self.start


@dataclass
class UnitBuffer:
    """Host-memory rows of one unit for every key, filled batch by batch, in order.

    A unit whose rows of every key exceed :data:`~diffprobe.store.layout.MAX_UNIT_BYTES` (units
    grown so that a split holds few files: native maps of many keys) is held a piece at a time: with
    ``store`` given, each full piece is hashed and put aside as soon as it is filled — into a
    :class:`~diffprobe.store.spill.Spill` file where the backend writes a shard whole (Zarr), so that
    :func:`write_unit` writes each key's shard once; else into the arrays at once (HDF5). The unit is
    still done only when :func:`write_unit` has written its last piece and then its marker, so a run
    stopped mid-unit redoes the whole unit, as before; :meth:`discard` removes a spill it leaves.
    """

    task: UnitTask
    shapes: dict[FeatureKey, tuple[int, ...]]
    dtype: str
    #: where full pieces are written before the unit is done (None: the whole unit is held)
    store: FeatureStore | None = None
    data: dict[FeatureKey, np.ndarray] = field(init=False)
    valid: np.ndarray = field(init=False)
    filled: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    #: how the values were computed (device, compiled or not), recorded in the unit's done marker
    compute: dict[str, Any] = field(default_factory=dict)
    #: the unit's row held in data[·][0] (pieces before it are written)
    base: int = field(init=False, default=0)
    #: bytes of the pieces already written
    nbytes: int = field(init=False, default=0)
    #: rows held at a time (:func:`piece_rows`; the unit's size when it is held whole)
    rows: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        n = self.task.size
        item = np.dtype(self.dtype).itemsize
        self._row_bytes = {str(k): int(np.prod(self.shapes[k], dtype=np.int64)) * item for k in self.task.keys}
        self.rows = n if self.store is None else piece_rows(n, sum(self._row_bytes.values()))
        self.data = {k: np.empty((self.rows, *self.shapes[k]), dtype=self.dtype) for k in self.task.keys}
        self.valid = np.zeros(n, dtype=bool)
        self._digests = {str(k): Digest((n, *self.shapes[k]), np.dtype(self.dtype)) for k in self.task.keys}
        self._firsts: dict[str, list[np.ndarray]] = {str(k): [] for k in self.task.keys}
        self._chunks: dict[str, int] = {}  # rows per chunk of each key's array, read at the first piece
        self._spill: Spill | None = None  # the full pieces before the last (a backend that writes a shard whole)

    def add(self, start: int, feats: dict[FeatureKey, np.ndarray], ok: np.ndarray, failures: list[tuple[str, str]]) -> None:
        """Rows for global items [start, start + B); rows of failed items become NaN."""
        lo = start - self.task.start
        self.valid[lo : lo + len(ok)] = ok
        self.failures += failures
        done = 0
        while done < len(ok):
            take = min(len(ok) - done, self.base + self.rows - (lo + done))
            a = lo + done - self.base
            part = ok[done : done + take]
            for k, v in feats.items():
                self.data[k][a : a + take] = v[done : done + take]
                if not part.all():
                    self.data[k][a : a + take][~part] = np.nan
            done += take
            self.filled += take
            if self.filled == self.base + self.rows and self.filled < self.task.size:
                assert self.store is not None  # only a buffer given a store holds less than its unit
                self._write_piece(self.store, self.rows)

    def _write_piece(self, store: FeatureStore, n: int) -> None:
        """Hash the held rows [base, base + n) of every key and put them aside (a piece before the
        last) or write the unit's shards (the last piece, with the spilled ones before it)."""
        task = self.task
        if not self._chunks:
            self._chunks = {name: max(1, int(store.backend.chunk_rows(task.split, name))) for name in self._digests}
        last = self.base + n >= task.size
        if self._spill is None and not last and (folder := store.backend.spill_folder(task.split)) is not None:
            self._spill = Spill(folder, task.unit, task.size, self._row_bytes)
        for k, arr in self.data.items():
            name, rows, chunk = str(k), arr[:n], self._chunks[str(k)]
            if self._spill is None:
                store.backend.write_rows(task.split, name, task.start + self.base, rows)
            elif not last:
                self._spill.write(name, self.base, rows)
            else:  # the key's rows of the whole unit, assembled once: its shard is written once
                whole = np.empty((task.size, *self.shapes[k]), dtype=self.dtype)
                self._spill.read_into(name, whole[: self.base])
                whole[self.base :] = rows
                store.backend.write_rows(task.split, name, task.start, whole)
                del whole
            first = -(-self.base // chunk) * chunk - self.base  # this piece's first row that starts a chunk
            self._firsts[name].append(rows[first::chunk].copy())  # the buffer is reused by the next piece
            self._digests[name].add(rows)
            self.nbytes += rows.nbytes
        self.base += n

    def finish(self, store: FeatureStore) -> tuple[dict[str, str], dict[str, list[int | str]]]:
        """Write the last piece to ``store``; the unit's (digests, row prints) of every key (see :mod:`~diffprobe.store.digests`)."""
        self._write_piece(store, self.task.size - self.base)
        prints: dict[str, list[int | str]] = {name: [self._chunks[name], digest(np.concatenate(f))] for name, f in self._firsts.items()}
        return {name: d.hexdigest() for name, d in self._digests.items()}, prints

    def discard(self) -> None:
        """Remove the pieces put aside in a spill file (a unit written, or dropped unfinished)."""
        if self._spill is not None:
            self._spill.close()
            self._spill = None

    @property
    def complete(self) -> bool:
        return self.filled >= self.task.size


def piece_rows(n: int, row_bytes: int) -> int:
    """Rows of a unit of ``n`` rows held at once: all of them when they fit
    :data:`~diffprobe.store.layout.MAX_UNIT_BYTES`, else the largest power of two that does."""
    if n * row_bytes <= MAX_UNIT_BYTES:
        return n
    return 1 << max(0, (MAX_UNIT_BYTES // max(1, row_bytes)).bit_length() - 1)


def write_unit(store: FeatureStore, buf: UnitBuffer) -> int:
    """Write a finished unit's shards (its last piece, when it was written in pieces), its valid rows,
    then its done marker — which records a digest of every array's rows of the unit (see
    :mod:`~diffprobe.store.digests`). Returns bytes written."""
    task = buf.task
    try:
        digests, prints = buf.finish(store)
    finally:
        buf.discard()
    store.backend.write_rows(task.split, "valid", task.start, buf.valid)
    store.backend.flush()
    payload: dict[str, Any] = {
        "keys": sorted(set(task.done_keys) | set(digests)),
        "digest": DIGEST,
        "digests": {**task.done_digests, **digests, **unit_digests({"valid": buf.valid})},
        "print": ROW_PRINT,
        "prints": {**task.done_prints, **prints},
        "start": task.start,
        "stop": task.stop,
        "failed": [list(f) for f in buf.failures],
        "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "host": socket.gethostname(),
        "pid": os.getpid(),
    }
    if buf.compute:
        payload["compute"] = buf.compute
    store.backend.write_marker(task.split, task.unit, payload)
    return buf.nbytes


#: Finished units that may wait for a writer thread before ``BackgroundWriter.submit`` blocks.
WRITE_QUEUE_DEPTH = 2


def writer_threads(store: FeatureStore | type[Backend]) -> int:
    """Threads that write finished units: min(4, CPU cores) where the backend takes concurrent writers (Zarr), else 1.

    ``store``: an open store, or the backend class of one not yet opened (``--dry-run``).

    Zarr units write in parallel safely: each unit owns whole shards (its feature rows and its
    ``valid`` rows) and its own done marker, so two units never touch one file. Encoding (zstd,
    crc32c), hashing (BLAKE2b) and file writes release the GIL, so threads use several cores. HDF5
    (h5py) writes one call at a time, so it gets one thread.
    """
    backend = store if isinstance(store, type) else store.backend
    return max(1, min(4, os.cpu_count() or 1)) if backend.concurrent_writers else 1


class BackgroundWriter:
    """Writes finished units on background threads so that compute overlaps storage.

    ``threads`` writer threads (default :func:`writer_threads`) each take a whole unit and write it
    with :func:`write_unit` — data first, its done marker last — so units finish in any order but a
    marker never precedes its unit's data. ``submit`` blocks when ``depth`` units are already
    waiting, so at most ``depth + threads`` finished units are held in memory. The first error on a
    writer thread is re-raised in the caller at the next ``submit`` or at ``close``; units not yet
    started are then dropped (units already being written finish, marker included).
    """

    def __init__(self, store: FeatureStore, depth: int = WRITE_QUEUE_DEPTH, threads: int | None = None) -> None:
        self.store = store
        n = writer_threads(store) if threads is None else threads
        if n < 1:
            raise ValueError(f"expected at least 1 writer thread, got {n}")
        if n > 1 and not store.backend.concurrent_writers:
            log.debug("the %s backend writes from one thread; using 1 writer thread, not %d", store.format, n)
            n = 1
        self.q: queue.Queue[UnitBuffer | None] = queue.Queue(maxsize=depth)
        self.error: BaseException | None = None
        self.bytes_written = 0
        self.units_written = 0
        self._lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, name=f"diffprobe-writer-{i}", daemon=True) for i in range(n)]
        for t in self.threads:
            t.start()

    def _run(self) -> None:
        while True:
            buf = self.q.get()
            if buf is None:
                return
            if self.error is not None:
                buf.discard()
                continue  # keep draining so that ``submit`` never blocks on a failed writer
            try:
                nbytes = write_unit(self.store, buf)
            except BaseException as e:  # surfaced in the caller
                with self._lock:
                    self.error = self.error or e
                continue
            with self._lock:
                self.bytes_written += nbytes
                self.units_written += 1

    def _raise(self) -> None:
        if self.error is not None:
            raise self.error

    def submit(self, buf: UnitBuffer) -> None:
        """Queue a complete unit: the writer owns it from here, written or (after an error) dropped."""
        if self.error is not None:
            buf.discard()
        self._raise()
        self.q.put(buf)

    def close(self) -> None:
        """Finish every submitted unit, stop the threads, and raise any writer error."""
        for _ in self.threads:
            self.q.put(None)
        for t in self.threads:
            t.join()
        self._raise()
