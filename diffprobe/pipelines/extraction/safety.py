"""What keeps a store whole while it is written: one writer at a time, HDF5 written through a
resumable working store and published atomically, and I/O failures explained in one paragraph."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from diffprobe.errors import StoreBusyError, StoreError, StoreIOError
from diffprobe.pipelines.extraction.locks import file_lock, holder_text, record, stamp
from diffprobe.pipelines.extraction.temporaries import publish_temporary, remove_stale_publishing
from diffprobe.sizes import format_bytes
from diffprobe.store.store import open_store

log = logging.getLogger(__name__)


def lock_file(out: Path) -> Path:
    """The writer lock beside a store: ``.<name>.writer`` (it holds the writer's pid, host and start)."""
    return out.parent / f".{out.name}.writer"


@contextlib.contextmanager
def writer_lock(out: Path) -> Iterator[None]:
    """Hold the store's writer lock for the run: a second run on the same store is refused with who
    holds it. A lock left by a run that died is taken over (see :mod:`~diffprobe.pipelines.extraction.locks`);
    the lock file is gone when the run ends."""
    what = f"the writer lock of {out}"

    def busy(holder: str) -> StoreBusyError:
        return StoreBusyError(
            f"store {out} is being written by another run ({holder}); wait for it to finish or stop it. "
            "Shards of one job (--shard i/n) may write a store together; other runs may not"
        )

    with file_lock(lock_file(out), what, busy=busy) as fd:
        previous = record(fd, stamp())
        if previous:
            log.warning("taking over %s: the run that held it (%s) is gone", what, holder_text(previous))
        yield


# -- HDF5 through a working store -------------------------------------------------------------------
def working_store(out: Path) -> Path:
    """The resumable Zarr store an HDF5 extraction runs into, beside the ``.h5`` it publishes."""
    return out.with_name(out.name + ".partial.zarr")


def publish_hdf5(work: Path, out: Path) -> None:
    """Export the working store to ``out`` atomically (a temporary name, then a rename), then remove
    it: a run killed at any point leaves either the previous ``.h5`` or the new one, never a torn file.

    The free space is checked first; a write that fails anyway (the disk filled meanwhile) removes
    the temporary file and is one paragraph (:class:`StoreIOError`). The working store is kept in
    both cases, so re-running the same command publishes without computing anything again.
    """
    from diffprobe.store.maintenance import export_store

    remove_stale_publishing(out)
    need = hdf5_bytes(work)
    free = shutil.disk_usage(out.parent).free
    if need > free:
        raise StoreIOError(
            f"publishing {out} needs about {format_bytes(need)}, but its folder has {format_bytes(free)} free; nothing was "
            f"written. Every unit is done and kept in {work}: free space (or move the store with `diffprobe store export "
            f"{work} ELSEWHERE.h5`), then re-run the same command, which only publishes"
        )  # fmt: skip
    tmp = publish_temporary(out)
    tmp.unlink(missing_ok=True)  # this process's own temporary name (left by a killed run of the same pid)
    try:
        export_store(work, tmp, overwrite=True)
        with open_store(tmp, mode="a") as s:
            s.update_attrs({"config": {**s.config, "out": str(out)}})
        os.replace(tmp, out)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError) or _errno(e) is not None:
            raise StoreIOError(f"publishing {out} from its working store failed: {_strerror(e)}; the partial file was removed. "
                               f"Every unit is done and kept in {work}. To finish: {_HINTS.get(_errno(e) or -1, 'fix the cause')}, "
                               "then re-run the same command, which only publishes") from e  # fmt: skip
        raise
    shutil.rmtree(work, ignore_errors=True)


def hdf5_bytes(work: Path) -> int:
    """About how many bytes the HDF5 file of the working store ``work`` takes: HDF5 stores values
    uncompressed (strings: their UTF-8 text and a heap entry each), plus 5% and 1 MiB of metadata."""
    total = 0
    with open_store(work) as s:
        for split in s.splits:
            for name in s.backend.arrays(split):
                shape, dtype, _ = s.backend.array_info(split, name)
                count = int(np.prod(shape, dtype=np.float64))
                total += count * (64 if dtype.kind in "UTSO" else dtype.itemsize)
    return int(total * 1.05) + (1 << 20)


def _errno(e: BaseException) -> int | None:
    """The errno of an OS-level failure; h5py raises some as plain errors whose text carries it."""
    if isinstance(e, OSError) and e.errno:
        return e.errno
    m = re.search(r"errno = (\d+)", str(e))
    return int(m.group(1)) if m else None


def _strerror(e: BaseException) -> str:
    code = _errno(e)
    return os.strerror(code) if code else (str(e).splitlines()[0][:200] if str(e) else type(e).__name__)


# -- I/O failures -------------------------------------------------------------------------------------
_HINTS = {
    errno.ENOSPC: "the disk is full: free space, or write the store elsewhere (a new --out)",
    errno.EDQUOT: "the disk quota is exhausted: free space, or write the store elsewhere (a new --out)",
    errno.EACCES: "permission denied: check that you may write to the store's folder",
    errno.EPERM: "the operation is not permitted: check that you may write to the store's folder",
    errno.EROFS: "the file system is read-only: write the store elsewhere (a new --out)",
    errno.ENOENT: "a file or folder of the store vanished while it was written (deleted, or a disk unmounted?)",
}


def io_failure(error: OSError, out: Path) -> str:
    """One paragraph: what failed, which units are done, and how to resume."""
    what = _strerror(error) if error.strerror is None else error.strerror
    where = f" ({error.filename})" if getattr(error, "filename", None) else ""
    hint = _HINTS.get(_errno(error) or -1, "fix the cause")
    try:
        with open_store(out) as s:
            done = sum(len(s.markers(sp)) for sp in s.splits)
            total = sum(len(s.units(sp)) for sp in s.splits)
        state = (f"{done} of {total} units are done and kept; the units being written when it failed are not marked "
                 "done and will be computed again")  # fmt: skip
    except (StoreError, OSError):
        state = "the units already marked done are kept"
    return f"writing {out} failed: {what}{where}. {state}. To resume: {hint}, then re-run the same command."
