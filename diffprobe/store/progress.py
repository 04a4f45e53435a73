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
from typing import Any

import numpy as np

from diffprobe.store.digests import DIGEST, unit_digests
from diffprobe.store.layout import FeatureKey
from diffprobe.store.store import FeatureStore

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

    @property
    def size(self) -> int:
        return self.stop - self.start


@dataclass
class UnitBuffer:
    """Host-memory rows of one unit for every key, filled batch by batch."""

    task: UnitTask
    shapes: dict[FeatureKey, tuple[int, ...]]
    dtype: str
    data: dict[FeatureKey, np.ndarray] = field(init=False)
    valid: np.ndarray = field(init=False)
    filled: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    #: how the values were computed (device, compiled or not), recorded in the unit's done marker
    compute: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = self.task.size
        self.data = {k: np.empty((n, *self.shapes[k]), dtype=self.dtype) for k in self.task.keys}
        self.valid = np.zeros(n, dtype=bool)

    def add(self, start: int, feats: dict[FeatureKey, np.ndarray], ok: np.ndarray, failures: list[tuple[str, str]]) -> None:
        """Rows for global items [start, start + B); rows of failed items become NaN."""
        lo = start - self.task.start
        hi = lo + len(ok)
        for k, v in feats.items():
            self.data[k][lo:hi] = v
            if not ok.all():
                self.data[k][lo:hi][~ok] = np.nan
        self.valid[lo:hi] = ok
        self.failures += failures
        self.filled += len(ok)

    @property
    def complete(self) -> bool:
        return self.filled >= self.task.size


def write_unit(store: FeatureStore, buf: UnitBuffer) -> int:
    """Write a finished unit's shards, its valid rows, then its done marker — which records a digest
    of every array's rows of the unit (see :mod:`~diffprobe.store.digests`). Returns bytes written."""
    task = buf.task
    nbytes = 0
    written = {str(k): arr for k, arr in buf.data.items()}
    for name, arr in written.items():
        store.backend.write_rows(task.split, name, task.start, arr)
        nbytes += arr.nbytes
    store.backend.write_rows(task.split, "valid", task.start, buf.valid)
    store.backend.flush()
    payload: dict[str, Any] = {
        "keys": sorted(set(task.done_keys) | set(written)),
        "digest": DIGEST,
        "digests": {**task.done_digests, **unit_digests({**written, "valid": buf.valid})},
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
    return nbytes


class BackgroundWriter:
    """Writes finished units on a background thread so that compute overlaps storage.

    ``submit`` blocks when ``depth`` units are already waiting (bounded memory). An error on the
    writer thread is re-raised in the caller at the next ``submit`` or at ``close``.
    """

    def __init__(self, store: FeatureStore, depth: int = 2) -> None:
        self.store = store
        self.q: queue.Queue[UnitBuffer | None] = queue.Queue(maxsize=depth)
        self.error: BaseException | None = None
        self.bytes_written = 0
        self.units_written = 0
        self.thread = threading.Thread(target=self._run, name="diffprobe-writer", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            buf = self.q.get()
            if buf is None:
                return
            if self.error is not None:
                continue
            try:
                self.bytes_written += write_unit(self.store, buf)
                self.units_written += 1
            except BaseException as e:  # surfaced in the caller
                self.error = e

    def _raise(self) -> None:
        if self.error is not None:
            raise self.error

    def submit(self, buf: UnitBuffer) -> None:
        self._raise()
        self.q.put(buf)

    def close(self) -> None:
        """Finish every submitted unit, stop the thread, and raise any writer error."""
        self.q.put(None)
        self.thread.join()
        self._raise()
