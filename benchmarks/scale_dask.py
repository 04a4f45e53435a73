"""benchmarks/scale.py's dask stage: ``extract --workers 2`` (a LocalCluster) with one worker killed
mid-way, the scheduler's memory and tasks, and the store compared byte for byte with one process's.

The extraction runs in a fresh process (scale_run.py --scheduler) whose peak RSS is the client's and
the scheduler's together (a LocalCluster's scheduler runs in the client's process); this process
watches the store's done markers and, once the first unit is done and more than two remain,
SIGKILLs one worker (as tests/pipelines/extraction/test_distributed.py does); dask reschedules its
unit on a fresh worker the nanny starts.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import numpy as np


def workers_of(pid: int) -> list[int]:
    """Dask worker processes (spawned by multiprocessing) below process ``pid``."""
    import psutil

    try:
        kids = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    out = []
    for k in kids:
        try:
            if "spawn_main" in " ".join(k.cmdline()):
                out.append(k.pid)
        except psutil.Error:
            continue
    return out


def workers_rss_mib(pids: list[int]) -> float:
    """Summed RSS of ``pids`` now (those that still run), in MiB."""
    import psutil

    total = 0
    for p in pids:
        try:
            total += psutil.Process(p).memory_info().rss
        except psutil.Error:
            continue
    return total / 2**20


class Killer(threading.Thread):
    """Kills one worker of process ``pid`` once ``store`` has ≥ 1 done marker and < ``units`` − 2;
    meanwhile records the workers' summed peak RSS."""

    def __init__(self, pid: int, store: Path, units: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.store, self.units = pid, store, units
        self.killed: list[tuple[int, int]] = []  # (pid, markers done when killed)
        self.workers_peak_mib = 0.0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.1):
            pids = workers_of(self.pid)
            self.workers_peak_mib = max(self.workers_peak_mib, workers_rss_mib(pids))
            if self.killed or not pids:
                continue
            done = len(list(self.store.glob("_progress/*/unit-*.json")))
            if 1 <= done < self.units - 2:
                os.kill(pids[0], signal.SIGKILL)
                self.killed.append((pids[0], done))


def run_killed(cmd: list[str], store: Path, units: int, timeout: float, log: Path) -> tuple[subprocess.CompletedProcess, Killer]:
    """Run ``cmd`` (the dask extraction) while a :class:`Killer` watches it."""
    with open(log, "w") as out:
        p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, text=True)
        killer = Killer(p.pid, store, units)
        killer.start()
        try:
            rc = p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            rc = p.wait()
        finally:
            killer.stop.set()
            killer.join()
    return subprocess.CompletedProcess(cmd, rc, log.read_text(), ""), killer


def chunk_digests(store: Path) -> dict[str, str]:
    """sha256 of every chunk/shard file of every split's arrays, by relative path."""
    out = {}
    for f in sorted(store.glob("*/*/c/**/*")):
        if f.is_file() and not f.relative_to(store).parts[0].startswith("_"):
            out[str(f.relative_to(store))] = hashlib.sha256(f.read_bytes()).hexdigest()
    return out


def same_arrays(a: Path, b: Path, rows: int = 65536) -> list[str]:
    """Every split's feature arrays and item table read from both stores and compared bit for bit
    (``rows`` at a time); the differences, empty when none."""
    from diffprobe.store import open_store
    from diffprobe.store.layout import ITEM_ARRAYS

    diffs = []
    with open_store(a) as sa, open_store(b) as sb:
        if sa.splits != sb.splits:
            return [f"splits differ: {sa.splits} vs {sb.splits}"]
        for split in sa.splits:
            keys = sorted(sa.keys(split))
            if keys != sorted(sb.keys(split)):
                diffs.append(f"{split}: keys differ")
                continue
            for name in ITEM_ARRAYS:  # the item table, through the store's own readers
                read = {"item_id": "ids", "path": "paths", "label": "labels", "valid": "valid"}[name]
                if not np.array_equal(np.asarray(getattr(sa, read)(split)), np.asarray(getattr(sb, read)(split))):
                    diffs.append(f"{split}/{name} differs")
            for name in keys:
                xa, xb = sa.read(split, name, lazy=True), sb.read(split, name, lazy=True)
                if xa.shape != xb.shape:
                    diffs.append(f"{split}/{name}: shape {xa.shape} vs {xb.shape}")
                    continue
                for lo in range(0, xa.shape[0], rows):
                    pa, pb = np.asarray(xa[lo : lo + rows]), np.asarray(xb[lo : lo + rows])
                    if pa.tobytes() != pb.tobytes():
                        diffs.append(f"{split}/{name}: rows {lo}.. differ")
                        break
    return diffs


def compare(reference: Path, other: Path) -> tuple[bool, str]:
    """(identical, what was compared): chunk files' sha256 and the arrays read back."""
    t0 = time.perf_counter()
    da, db = chunk_digests(reference), chunk_digests(other)
    files_same = da == db
    diffs = same_arrays(reference, other)
    what = f"{len(da)} chunk files identical"
    if not files_same:
        only_a, only_b = sorted(set(da) - set(db)), sorted(set(db) - set(da))
        changed = sorted(f for f in set(da) & set(db) if da[f] != db[f])
        what = (f"chunk files DIFFER: {len(changed)} of {len(da)} differ (e.g. {changed[:2]}), {len(only_a)} only in the "
                f"reference (e.g. {only_a[:2]}), {len(only_b)} only in the dask store (e.g. {only_b[:2]})")  # fmt: skip
    what += f"; arrays {'identical' if not diffs else 'DIFFER: ' + '; '.join(diffs[:3])} ({time.perf_counter() - t0:.0f} s)"
    return files_same and not diffs, what
