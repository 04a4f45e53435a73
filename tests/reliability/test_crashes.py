"""Faults that ended in a traceback or a crash: each is now one paragraph and an exit code.

- The disk filled while the .h5 was published from its working store: h5py tracebacks, exit 139,
  and a temporary .h5 left keeping the disk full.
- A read-only output folder: an OSError traceback from the writer lock (extract, extend, repair).
- Right after `kill -9`, a re-run was refused for ~5 s naming the dead pid: the image loader's
  worker had inherited the lock's descriptor.
- SIGINT exited 1, not 130.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import diffprobe
from diffprobe.pipelines.extraction.safety import lock_file, writer_lock
from diffprobe.store.integrity import deep_verify
from tests.helpers import read_all
from tests.pipelines.extraction.test_faults import ROOT, assert_identical
from tests.reliability.conftest import TINY_ARGS, beside, cli, tiny_args


# -- the disk fills while the .h5 is published -----------------------------------------------------
@pytest.fixture(scope="module")
def h5_work(tiny_manifest, tmp_path_factory):
    """The working store of an HDF5 extraction whose every unit is done (its publishing failed once)."""
    import diffprobe.pipelines.extraction.job as job

    out = tmp_path_factory.mktemp("h5") / "s.h5"
    with pytest.MonkeyPatch.context() as m:
        m.setattr(job, "publish_hdf5", lambda work, out: (_ for _ in ()).throw(OSError(errno.ENOSPC, "No space left on device")))
        code, text = cli(*tiny_args(tiny_manifest, out))
    assert code == 1, text
    return out.with_name("s.h5.partial.zarr")


@pytest.mark.parametrize("fault", ["too little space", "the disk fills while writing"])
def test_publishing_an_h5_on_a_full_disk_is_one_paragraph_and_resumes(fault, h5_work, tiny_store, tiny_manifest, tmp_path, monkeypatch):
    import shutil

    import diffprobe.pipelines.extraction.safety as safety
    from diffprobe.store.hdf5_backend import HDF5Backend

    out = tmp_path / "s.h5"
    work = out.with_name("s.h5.partial.zarr")
    shutil.copytree(h5_work, work)
    with monkeypatch.context() as m:
        if fault == "too little space":
            m.setattr(safety.shutil, "disk_usage", lambda p: _Usage(1 << 20))
        else:
            real, calls = HDF5Backend.write_rows, []

            def full(self, group, name, start, data):
                calls.append(name)
                if len(calls) > 5:
                    raise OSError(errno.ENOSPC, "No space left on device", str(self.path))
                return real(self, group, name, start, data)

            m.setattr(HDF5Backend, "write_rows", full)
        code, text = cli(*tiny_args(tiny_manifest, out))
    assert code == 1, text
    if fault == "too little space":
        assert f"Error: publishing {out} needs about " in text and "but its folder has 1.0 MiB free; nothing was written" in text, text
    else:
        assert f"Error: publishing {out} from its working store failed: No space left on device; the partial file was removed" in text
    assert f"Every unit is done and kept in {work}" in text and "re-run the same command, which only publishes" in text, text
    assert not out.exists() and work.is_dir() and beside(out) == []  # no temporary .h5 keeps the disk full
    (tmp_path / f".{out.name}.4242.tmp.h5").write_bytes(b"a killed publish")  # a run killed while publishing left this
    code, text = cli(*tiny_args(tiny_manifest, out))
    assert code == 0 and "units: 0 run, 6 already done" in text and "a temporary left by a run that was stopped" in text, text
    assert not work.exists() and beside(out) == []
    got, ref = read_all(out), read_all(tiny_store)
    assert got.keys() == ref.keys() and all(np.array_equal(got[k], ref[k], equal_nan=True) for k in ref)
    with diffprobe.open_store(out) as s:
        assert s.is_complete() and deep_verify(s).ok


class _Usage:
    def __init__(self, free: int) -> None:
        self.total, self.used, self.free = free, 0, free


# -- a read-only output folder ----------------------------------------------------------------------
@pytest.mark.parametrize("command", ["extract", "extend", "repair"])
def test_a_read_only_folder_is_one_paragraph(command, tiny, tiny_store, tiny_manifest, tmp_path, monkeypatch):
    import diffprobe.pipelines.extraction.locks as locks

    real = locks.os.open

    def read_only(path, flags, mode=0o777):
        if str(path).endswith(".writer"):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real(path, flags, mode)

    out = tmp_path / "new.zarr" if command == "extract" else tiny
    args = {"extract": tiny_args(tiny_manifest, out), "extend": [*tiny_args(tiny_manifest, out)[:-2], "--out", out, "--t", "50,150"],
            "repair": ["store", "repair", out, "--no-progress"]}[command]  # fmt: skip
    with monkeypatch.context() as m:
        m.setattr(locks.os, "open", read_only)
        code, text = cli(*args)
    assert code == 1, text
    assert (
        f"Error: cannot take the writer lock of {out}: creating {lock_file(out)} failed: Permission denied. permission denied: "
        "the folder is not writable by you; write the store elsewhere (another --out) or fix its permissions. Nothing was written"
    ) in text
    if command == "extract":
        assert not out.exists()
        code, text = cli(*args)  # once the folder is writable
        assert code == 0, text
    assert_identical(out, tiny_store)
    assert beside(out) == []


# -- kill -9, SIGINT, SIGTERM -----------------------------------------------------------------------
_CHILD = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, ROOT)
    import diffprobe.store.progress as progress
    from diffprobe.cli import main
    real = progress.write_unit
    def slow(store, buf):
        n = real(store, buf)
        time.sleep(0.2)
        return n
    progress.write_unit = slow
    main(ARGS, prog_name="diffprobe")
    """
)


@pytest.mark.parametrize(
    ("sig", "code"), [(signal.SIGKILL, -9), (signal.SIGINT, 130)]
)  # SIGTERM (143): test_interrupts_exit_with_the_shells_code
def test_a_stopped_run_is_resumed_at_once_to_the_same_bytes(sig, code, tiny_store, tiny_manifest, tmp_path):
    """The run has an image-loading worker process; right after the signal the same command runs (no
    'being written by another run'), and finishes the undisturbed store."""
    out = tmp_path / "s.zarr"
    args = [*tiny_args(tiny_manifest, out)]
    args[args.index("--loader-workers") + 1] = "1"
    proc = subprocess.Popen([sys.executable, "-c", f"ROOT, ARGS = {str(ROOT)!r}, {args[:]!r}\n" + _CHILD], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)  # fmt: skip
    deadline = time.time() + 120
    while time.time() < deadline and not list((out / "_progress" / "train").glob("unit-*.json")):
        time.sleep(0.05)
    proc.send_signal(sig)
    if sig == signal.SIGKILL:  # its orphaned loader worker keeps the output pipe open for a few seconds
        proc.wait(timeout=60)  # the re-run starts while it lives
        proc.stdout.close()
        output = ""
    else:
        output = proc.communicate(timeout=60)[0]
        assert "Traceback" not in output and "re-run the same command to resume" in output, output
    assert proc.returncode == code, output
    got, text = cli(*tiny_args(tiny_manifest, out))  # at once: a dead writer's lock is no lock
    assert got == 0 and "already done" in text, text
    assert_identical(out, tiny_store)
    assert beside(out) == []


def test_workers_forked_while_the_lock_is_held_never_hold_it(tmp_path):
    out = tmp_path / "s.zarr"
    child = textwrap.dedent(
        f"""
        import multiprocessing, sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from pathlib import Path
        from diffprobe.pipelines.extraction.safety import writer_lock
        with writer_lock(Path({str(out)!r})):
            worker = multiprocessing.get_context("fork").Process(target=time.sleep, args=(60,))
            worker.start()
            print(worker.pid, flush=True)
            time.sleep(60)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, text=True)
    worker = int(proc.stdout.readline())
    try:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        t0 = time.perf_counter()
        with writer_lock(out):  # the orphaned worker is still alive, and holds nothing
            pass
        assert time.perf_counter() - t0 < 1
    finally:
        os.kill(worker, signal.SIGKILL)
    assert not lock_file(out).exists()


def test_a_lock_naming_a_dead_process_is_taken_over_at_once(tmp_path, caplog):
    """A live process holds the lock file (an older diffprobe's orphaned worker) that names a writer of this host that is gone."""
    import socket

    out = tmp_path / "s.zarr"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock_file(out).write_text(f'{{"pid": {dead.pid}, "host": "{socket.gethostname()}", "since": "then", "command": "extract"}}')
    holder = subprocess.Popen([sys.executable, "-c", f"import fcntl, time; f = open({str(lock_file(out))!r}); fcntl.flock(f, fcntl.LOCK_EX); "
                                                     "print(1, flush=True); time.sleep(60)"], stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        holder.stdout.readline()
        with writer_lock(out):
            pass
    finally:
        holder.kill()
    assert f"taking over the writer lock of {out}: the run that held it (pid {dead.pid} on" in caplog.text


def test_interrupts_exit_with_the_shells_code(monkeypatch, tmp_path):
    import diffprobe.pipelines.extraction.job as job

    for interrupt, code in ((KeyboardInterrupt(), 130), (KeyboardInterrupt("signal 15"), 143)):

        def stop(*a, _e=interrupt, **k):
            raise _e

        monkeypatch.setattr(job, "extract_features", stop)
        got, text = cli("extract", "data", *TINY_ARGS, "--out", tmp_path / "s.zarr")
        assert got == code and f"interrupted (signal {code - 128})" in text, text
