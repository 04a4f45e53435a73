"""What keeps a store whole while it is written: one writer at a time, HDF5 written through a
resumable working store and published atomically, and I/O failures explained in one paragraph."""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import fcntl
import json
import logging
import os
import shutil
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

from diffprobe.errors import StoreBusyError, StoreError
from diffprobe.store.store import open_store

log = logging.getLogger(__name__)


def lock_file(out: Path) -> Path:
    """The writer lock beside a store: ``.<name>.writer`` (it holds the writer's pid, host and start)."""
    return out.parent / f".{out.name}.writer"


@contextlib.contextmanager
def writer_lock(out: Path) -> Iterator[None]:
    """Hold the store's writer lock for the run: a second run on the same store is refused with who
    holds it. A lock left by a run that died is taken over (the kernel released its ``flock``)."""
    path = lock_file(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    f = open(path, "a+")
    try:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = _holder(f.read())
            raise StoreBusyError(
                f"store {out} is being written by another run ({holder}); wait for it to finish or stop it. "
                "Shards of one job (--shard i/n) may write a store together; other runs may not"
            ) from None
        f.seek(0)
        previous = f.read().strip()
        if previous:
            log.warning("taking over the writer lock of %s: the run that held it (%s) is gone", out, _holder(previous))
        f.seek(0)
        f.truncate()
        f.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": _now(), "command": " ".join(sys.argv[:6])}))
        f.flush()
        try:
            yield
        finally:
            f.seek(0)
            f.truncate()
            f.flush()
            fcntl.flock(f, fcntl.LOCK_UN)
    finally:
        f.close()


def _holder(text: str) -> str:
    try:
        h = json.loads(text)
        return f"pid {h.get('pid')} on {h.get('host')} since {h.get('since')}: {h.get('command')}"
    except (json.JSONDecodeError, AttributeError):
        return "unknown"


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


# -- HDF5 through a working store -------------------------------------------------------------------
def working_store(out: Path) -> Path:
    """The resumable Zarr store an HDF5 extraction runs into, beside the ``.h5`` it publishes."""
    return out.with_name(out.name + ".partial.zarr")


def publish_hdf5(work: Path, out: Path) -> None:
    """Export the working store to ``out`` atomically (a temporary name, then a rename), then remove
    it: a run killed at any point leaves either the previous ``.h5`` or the new one, never a torn file."""
    from diffprobe.store.maintenance import export_store

    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp.h5")
    export_store(work, tmp, overwrite=True)
    with open_store(tmp, mode="a") as s:
        s.update_attrs({"config": {**s.config, "out": str(out)}})
    os.replace(tmp, out)
    shutil.rmtree(work, ignore_errors=True)


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
    what = error.strerror or str(error)
    where = f" ({error.filename})" if getattr(error, "filename", None) else ""
    hint = _HINTS.get(error.errno or -1, "fix the cause")
    try:
        with open_store(out) as s:
            done = sum(len(s.markers(sp)) for sp in s.splits)
            total = sum(len(s.units(sp)) for sp in s.splits)
        state = (f"{done} of {total} units are done and kept; the units being written when it failed are not marked "
                 "done and will be computed again")  # fmt: skip
    except (StoreError, OSError):
        state = "the units already marked done are kept"
    return f"writing {out} failed: {what}{where}. {state}. To resume: {hint}, then re-run the same command."
