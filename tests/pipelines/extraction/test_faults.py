"""Fault injection: damage a store in every way we know, check that verify reports exactly the damage,
and that repair or resume restores a store byte-identical to an undisturbed one."""

from __future__ import annotations

import errno
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import diffprobe
from diffprobe.cli import main
from diffprobe.errors import StoreBusyError, StoreIOError
from diffprobe.pipelines.extraction.repair import repair_store
from diffprobe.store.integrity import deep_verify
from tests.helpers import extract_config, read_all

ROOT = Path(__file__).resolve().parents[3]
ARRAY = "t0150_b13_p2"  # one unit of 32 rows is one chunk file of it in the session's small store


def data_files(store: Path) -> dict[str, bytes]:
    """Every chunk and shard file of a Zarr store (the metadata, with its timestamps, left out)."""
    return {str(p.relative_to(store)): p.read_bytes() for p in sorted(store.rglob("*")) if p.is_file() and "/c/" in str(p.relative_to(store))}


def assert_identical(store: Path, reference: Path) -> None:
    """The same values, the same chunk bytes, and every unit marked done."""
    got, ref = read_all(store), read_all(reference)
    assert got.keys() == ref.keys()
    for k in ref:
        assert got[k].tobytes() == ref[k].tobytes(), k
    assert data_files(store) == data_files(reference)
    with diffprobe.open_store(store) as s:
        assert s.is_complete() and deep_verify(s).ok


def chunk(store: Path, split: str, array: str, unit: int) -> Path:
    """The file of an array's chunk (or shard) ``unit`` along N: ``c/<unit>/0/0/…``."""
    path = store / split / array / "c" / str(unit)
    while path.is_dir():
        path = path / "0"
    return path


@pytest.fixture
def copy(small_store, tmp_path) -> Path:
    return Path(shutil.copytree(small_store, tmp_path / "s.zarr"))


def verify(store: Path, *args: str) -> tuple[int, str]:
    r = CliRunner().invoke(main, ["store", "verify", str(store), *args])
    return r.exit_code, r.output


def test_an_undisturbed_store_passes_the_deep_check(small_store):
    code, text = verify(small_store, "--deep")
    assert code == 0 and "every checksum and digest matches" in text, text
    code, text = CliRunner().invoke(main, ["store", "info", str(small_store)]).exit_code, CliRunner().invoke(main, ["store", "info", str(small_store)]).output
    assert "chunk checksums: crc32c" in text


@pytest.mark.parametrize("damage", ["flip a bit", "truncate", "delete", "swap in another unit's chunk"])
def test_chunk_damage_is_found_and_repaired(copy, small_store, damage):
    target = chunk(copy, "val", ARRAY, 1)
    assert target.is_file()
    data = bytearray(target.read_bytes())
    if damage == "flip a bit":
        data[len(data) // 2] ^= 0x10
        target.write_bytes(bytes(data))
    elif damage == "truncate":
        target.write_bytes(bytes(data[: len(data) // 3]))
    elif damage == "delete":
        target.unlink()
    else:
        target.write_bytes(chunk(copy, "val", ARRAY, 0).read_bytes())  # a valid chunk, but not this unit's
    code, text = verify(copy)  # the plain check reads metadata only: the markers are intact
    assert code == 0 and "metadata only" in text, text
    code, text = verify(copy, "--deep")
    assert code == 1 and "store is DAMAGED: 1 unit(s)" in text, text
    corrupt = [ln for ln in text.splitlines() if ln.startswith("corrupt:")]
    kind = "checksum failed" if damage in ("flip a bit", "truncate") else "values differ from what was written"
    assert len(corrupt) == 1 and corrupt[0].startswith(f"corrupt: val/{ARRAY} unit 1 (items 32–49: ") and kind in corrupt[0], corrupt
    r = CliRunner().invoke(main, ["-q", "store", "repair", str(copy), "--no-progress"])
    assert r.exit_code == 0 and "recomputed val: 1 unit(s) (1)" in r.output and "repaired: every chunk reads and every digest matches" in r.output, r.output
    assert_identical(copy, small_store)


def test_item_table_and_valid_damage_are_found_and_repaired(copy, small_store):
    chunk(copy, "train", "valid", 2).unlink()  # reads as False: items 64–95 would look failed
    path = copy / "val" / "label" / "c" / "0"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with diffprobe.open_store(copy) as s:
        found = {(d.split, d.array, d.unit) for d in deep_verify(s).damage}
    assert found == {("train", "valid", 2), ("val", "label", -1)}
    rep = repair_store(copy, progress=False)
    assert rep.ok and rep.rewrote_item_table == ["val"] and rep.units == {"train": [2], "val": []}
    assert_identical(copy, small_store)


def test_a_deleted_marker_is_reported_and_resumed(copy, small_store, small_manifest):
    (copy / "_progress" / "val" / "unit-000001.json").unlink()
    code, text = verify(copy)
    assert code == 1 and "incomplete: val/t0050_b10_p1: 1 unit(s) not done (1)" in text
    s = diffprobe.extract_features(extract_config(small_manifest, copy, unit_size=32), progress=False)
    assert s.units_run == 1 and s.units_skipped == 5
    assert_identical(copy, small_store)


@pytest.mark.slow  # 7–13 s; a full disk's one paragraph and the resume are also in tests/reliability/test_crashes.py
def test_a_full_disk_is_one_clear_paragraph_and_the_store_resumes(small_manifest, small_store, tmp_path, monkeypatch):
    import diffprobe.store.progress as progress

    out = tmp_path / "full.zarr"
    real, calls = progress.write_unit, []

    def full_after_two(store, buf):
        calls.append(buf.task.unit)
        if len(calls) > 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(out / "val" / ARRAY / "c" / "0"))
        return real(store, buf)

    monkeypatch.setattr(progress, "write_unit", full_after_two)
    args = ["extract", str(small_manifest), "--model", "adm-32-fmnist", "--t", "50,150", "--blocks", "10,13", "--pool", "1,2",
            "--out", str(out), "--unit-size", "32", "--batch-size", "16", "--loader-workers", "0", "--no-progress"]  # fmt: skip
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 1 and "Traceback" not in r.output, r.output
    message = r.output.strip().splitlines()[-1]
    assert message.startswith(f"Error: writing {out} failed: No space left on device")
    assert "2 of 6 units are done and kept" in message and "the disk is full" in message and "re-run the same command" in message
    with pytest.raises(StoreIOError):
        diffprobe.extract_features(extract_config(small_manifest, out, unit_size=32), progress=False)
    monkeypatch.setattr(progress, "write_unit", real)
    s = diffprobe.extract_features(extract_config(small_manifest, out, unit_size=32), progress=False)
    assert s.units_skipped == 2 and s.units_run == 4
    assert_identical(out, small_store)
    r = CliRunner().invoke(main, ["-v", *args[:1], *args[1:]])
    assert r.exit_code == 0  # nothing left to do


@pytest.mark.parametrize(("code", "hint"), [
    (errno.EACCES, "permission denied: check that you may write to the store's folder"),
    (errno.EROFS, "the file system is read-only: write the store elsewhere"),
    (errno.ENOENT, "a file or folder of the store vanished while it was written"),
])  # fmt: skip
def test_other_write_failures_are_one_paragraph_too(small_manifest, tmp_path, monkeypatch, code, hint):
    import diffprobe.store.progress as progress

    out = tmp_path / "f.zarr"

    def fail(store, buf):
        raise OSError(code, os.strerror(code), str(out / "val"))

    monkeypatch.setattr(progress, "write_unit", fail)
    args = ["extract", str(small_manifest), "--model", "adm-32-fmnist", "--t", "50", "--blocks", "7", "--pool", "1", "--splits", "val",
            "--out", str(out), "--unit-size", "32", "--loader-workers", "0", "--no-progress"]  # fmt: skip
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 1 and "Traceback" not in r.output, r.output
    message = r.output.strip().splitlines()[-1]
    assert message.startswith(f"Error: writing {out} failed: {os.strerror(code)}") and hint in message, message
    assert "0 of 2 units are done and kept" in message and "re-run the same command" in message, message
    r = CliRunner().invoke(main, ["-v", *args])
    assert r.exit_code == 1 and "Traceback" in r.output and f"[Errno {code}]" in r.output  # -v: the traceback too


_SLOW_CHILD = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, ROOT)
    import diffprobe.store.progress as progress
    from tests.helpers import extract_config
    import diffprobe
    real = progress.write_unit
    def slow(store, buf):
        n = real(store, buf)
        time.sleep(SLEEP)
        return n
    progress.write_unit = slow
    diffprobe.extract_features(extract_config(MANIFEST, OUT, unit_size=32), progress=False)
    """
)


def child(manifest: Path, out: Path, sleep: float) -> subprocess.Popen:
    code = f"ROOT, MANIFEST, OUT, SLEEP = {str(ROOT)!r}, {str(manifest)!r}, {str(out)!r}, {sleep}\n" + _SLOW_CHILD
    return subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE)


def writing(manifest: Path, out: Path, until: Path | None = None) -> tuple[subprocess.Popen, Path]:
    """A slow writer in a child process, once it holds the store's lock (and ``until`` exists)."""
    proc = child(manifest, out, 1.0)
    lock = out.parent / f".{out.name}.writer"
    deadline = time.time() + 120
    while time.time() < deadline and not (lock.is_file() and lock.read_text().strip() and (until is None or until.exists())):
        time.sleep(0.05)
    return proc, lock


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_killed_at_a_random_moment_resumes_to_the_same_bytes(small_manifest, small_store, tmp_path, seed):
    out = tmp_path / f"k{seed}.zarr"
    proc = child(small_manifest, out, 0.2)
    time.sleep(random.Random(seed).uniform(1.0, 6.0))  # anywhere from model loading to the last units
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    s = diffprobe.extract_features(extract_config(small_manifest, out, unit_size=32), progress=False)
    assert s.units_total == 6
    assert_identical(out, small_store)


@pytest.mark.slow
def test_a_second_writer_is_refused_while_the_first_runs(small_manifest, small_store, tmp_path):
    out = tmp_path / "race.zarr"
    proc, lock = writing(small_manifest, out, until=out / "_progress" / "train")
    with pytest.raises(StoreBusyError, match=rf"store {out} is being written by another run \(pid {proc.pid} on "):
        diffprobe.extract_features(extract_config(small_manifest, out, unit_size=32), progress=False)
    with pytest.raises(StoreBusyError, match="is being written by another run"):  # a repair is a writer too
        repair_store(out, progress=False)
    assert proc.wait(timeout=180) == 0, proc.stderr.read().decode()[-2000:]
    assert not lock.exists()  # released, and removed (no lock file outlives a run)
    s = diffprobe.extract_features(extract_config(small_manifest, out, unit_size=32), progress=False)
    assert s.units_run == 0
    assert_identical(out, small_store)


@pytest.mark.slow
def test_a_writer_that_died_leaves_a_lock_that_is_taken_over(small_manifest, tmp_path, caplog):
    out = tmp_path / "stale.zarr"
    proc, lock = writing(small_manifest, out)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    assert str(proc.pid) in lock.read_text()  # the dead writer's lock is still there
    diffprobe.extract_features(extract_config(small_manifest, out, unit_size=32), progress=False)
    assert "taking over the writer lock" in caplog.text and f"pid {proc.pid}" in caplog.text


@pytest.mark.slow
def test_hdf5_killed_mid_run_is_never_torn_and_resumes(small_manifest, small_store, tmp_path):
    out = tmp_path / "s.h5"
    proc = child(small_manifest, out, 0.5)
    work = out.with_name(out.name + ".partial.zarr")
    deadline = time.time() + 120
    while time.time() < deadline and not (work / "_progress" / "train").is_dir() or not list((work / "_progress" / "train").glob("unit-*")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert not out.exists() and work.is_dir()  # the .h5 only ever appears whole
    s = diffprobe.extract_features(extract_config(small_manifest, out, unit_size=32), progress=False)
    assert s.units_skipped >= 1 and out.is_file() and not work.exists()
    got, ref = read_all(out), read_all(small_store)
    assert got.keys() == ref.keys() and all(np.array_equal(got[k], ref[k], equal_nan=True) for k in ref)
    with diffprobe.open_store(out) as h5:
        assert h5.is_complete() and deep_verify(h5).ok and h5.config["out"] == str(out)
        assert h5.backend.chunk_checksum("val", ARRAY) == "fletcher32"
