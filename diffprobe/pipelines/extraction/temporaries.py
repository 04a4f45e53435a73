"""The temporaries an extraction makes beside (and inside) a store, and removing those a killed run left.

Every temporary has a name that says whose it is:

- ``.NAME.creating-PID`` — a new store being built, renamed into place once its schema is written;
- ``.NAME.PID.tmp.h5`` — an HDF5 store being published from its working store;
- ``_progress/SPLIT/.unit-NNNNNN.PID.tmp`` — a done marker being written (Zarr);
- ``_progress/SPLIT/.unit-NNNNNN.XXXXXXXX.spill`` — the pieces of a unit too large for host memory,
  put aside until its end (:mod:`~diffprobe.store.spill`).

A run removes its own when it ends, however it ends. A run killed with SIGKILL cannot, so the next
run on the store removes them — under the lock that excludes their maker — with a log line.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from diffprobe.store.layout import PROGRESS_GROUP
from diffprobe.store.spill import SPILL_SUFFIX

log = logging.getLogger(__name__)

#: a store being created: ``CREATING_PREFIX.format(name=...)`` then the pid (and .h5 for HDF5)
CREATING_PREFIX = ".{name}.creating-"


def publish_temporary(out: Path) -> Path:
    """Where this process writes the HDF5 file it publishes as ``out``."""
    return out.with_name(f".{out.name}.{os.getpid()}.tmp.h5")


def _remove(path: Path) -> None:
    log.warning("removing %s: a temporary left by a run that was stopped before it could clean up", path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _beside(out: Path, prefix: str, suffix: str = "") -> list[Path]:
    if not out.parent.is_dir():
        return []
    return [p for p in out.parent.iterdir() if p.name.startswith(prefix) and p.name.endswith(suffix)]


def remove_stale_temporaries(out: Path, *, markers: bool = True) -> None:
    """Remove the stores half-built beside ``out`` (call it holding the store's creation lock, which
    every builder holds) and, with ``markers`` (the caller is the store's only writer), half-written
    done markers and the spilled pieces of unfinished units inside it."""
    for p in _beside(out, CREATING_PREFIX.format(name=out.name)):
        _remove(p)
    if markers:
        _remove_unit_temporaries(out, (".tmp", SPILL_SUFFIX))


def remove_stale_spills(out: Path) -> None:
    """Remove the spilled pieces of units whose worker was killed (call it when a run's every
    writer has stopped: its dask workers, after the run): its unit was redone by another."""
    _remove_unit_temporaries(out, (SPILL_SUFFIX,))


def _remove_unit_temporaries(out: Path, suffixes: tuple[str, ...]) -> None:
    progress = out / PROGRESS_GROUP
    if out.is_dir() and progress.is_dir():
        for split in progress.iterdir():
            if split.is_dir():
                for p in split.iterdir():
                    if p.name.startswith(".unit-") and p.name.endswith(suffixes):
                        _remove(p)


def remove_stale_publishing(out: Path) -> None:
    """Remove HDF5 files half-published as ``out`` by killed runs (call it holding the writer lock)."""
    mine = publish_temporary(out)
    for p in _beside(out, f".{out.name}.", ".tmp.h5"):
        if p != mine:
            _remove(p)
