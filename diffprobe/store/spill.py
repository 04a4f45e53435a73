"""The full pieces of one work unit, waiting in a temporary file until the unit's end.

A unit grown so that a split holds few files can hold more rows than fit host memory; it is filled a
piece at a time (:class:`~diffprobe.store.progress.UnitBuffer`). Zarr writes a shard whole, so
writing each piece into the unit's shards would rewrite them once per piece (k pieces: k/2 × the
unit's bytes). Instead each full piece goes into one :class:`Spill` file, laid out key-major — each
key's rows of the unit are one contiguous range — and at the unit's end each key's shard is
assembled with one read and written once: twice the unit's bytes written, whatever the number of
pieces, and one key's rows (one shard, at most 256 MiB) in memory at a time.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from diffprobe.errors import StoreError

log = logging.getLogger(__name__)

#: The suffix of a spill file; ``remove_stale_temporaries`` removes those a killed run left.
SPILL_SUFFIX = ".spill"


def _bytes(a: np.ndarray) -> memoryview:
    return np.ascontiguousarray(a).reshape(-1).view(np.uint8).data


class Spill:
    """Rows [0, n) of each key in ``row_bytes`` (bytes per row), in one file created in ``folder``
    as ``.unit-NNNNNN.<unique>.spill`` when the first piece is written, removed by :meth:`close`."""

    def __init__(self, folder: Path, unit: int, n: int, row_bytes: Mapping[str, int]) -> None:
        self.folder, self.unit, self.n = Path(folder), unit, n
        self.row_bytes = dict(row_bytes)
        self.offsets: dict[str, int] = {}
        at = 0
        for name, b in self.row_bytes.items():
            self.offsets[name] = at
            at += n * b
        self.nbytes = at  # the file's size once every row is written
        self.path: Path | None = None
        self._fd: int | None = None

    def _open(self) -> int:
        if self._fd is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(prefix=f".unit-{self.unit:06d}.", suffix=SPILL_SUFFIX, dir=self.folder)
            self._fd, self.path = fd, Path(name)
            log.debug("unit %d spills its pieces to %s (up to %d bytes)", self.unit, name, self.nbytes)
        return self._fd

    def write(self, name: str, row: int, rows: np.ndarray) -> None:
        """Store rows [row, row + len(rows)) of key ``name`` ((R, …) of ``row_bytes[name]`` bytes each)."""
        fd, buf = self._open(), _bytes(rows)
        if len(buf) != len(rows) * self.row_bytes[name] or row + len(rows) > self.n:
            raise ValueError(f"rows [{row}, {row + len(rows)}) of {name} do not fit the spill's {self.n} rows of {self.row_bytes[name]} bytes")
        at = self.offsets[name] + row * self.row_bytes[name]
        while buf:
            written = os.pwrite(fd, buf, at)
            buf, at = buf[written:], at + written

    def read_into(self, name: str, out: np.ndarray) -> None:
        """Fill ``out`` ((R, …), C-contiguous) with rows [0, R) of key ``name``, as written."""
        if not out.flags.c_contiguous:
            raise ValueError("read_into needs a C-contiguous array")
        buf = out.reshape(-1).view(np.uint8).data
        if len(buf) != len(out) * self.row_bytes[name]:
            raise ValueError(f"an array of {len(buf)} bytes is not {len(out)} rows of {name}")
        fd, at = self._open(), self.offsets[name]
        while buf:
            got = os.preadv(fd, [buf], at)
            if got == 0:
                raise StoreError(f"the spill file {self.path} ended early (rows of {name} missing); re-run to redo the unit")
            buf, at = buf[got:], at + got

    def close(self) -> None:
        """Remove the file (again: nothing)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self.path is not None:
            self.path.unlink(missing_ok=True)
            self.path = None
