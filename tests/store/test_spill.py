"""A unit held a piece at a time puts its full pieces aside in one temporary file inside the store and
writes each key's shard once at its end; nothing of it stays behind however it ends."""

from __future__ import annotations

import time

import numpy as np
import pytest

import diffprobe.store.progress as progress
from diffprobe.errors import StoreError
from diffprobe.store.progress import BackgroundWriter
from diffprobe.store.spill import SPILL_SUFFIX, Spill
from diffprobe.store.store import create_store
from tests.store.test_writer import KEYS, LAYOUTS, UNIT, N, _fill, make_store, shard_bytes, units


def spills(path) -> list[str]:
    return sorted(p.name for p in path.rglob(f"*{SPILL_SUFFIX}"))


def test_a_spill_gives_back_each_keys_rows_as_written_in_any_order(tmp_path):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((10, 3, 2)).astype(np.float16)
    b = rng.standard_normal((10, 5)).astype(np.float32)
    s = Spill(tmp_path / "p", 7, 10, {"a": a[0].nbytes, "b": b[0].nbytes})
    assert s.path is None and not (tmp_path / "p").exists(), "the file is made when the first piece comes"
    s.write("b", 4, b[4:10])
    s.write("a", 0, a[0:4])
    s.write("b", 0, b[0:4])
    s.write("a", 4, a[4:8])
    assert s.path is not None and s.path.name.startswith(".unit-000007.") and s.path.name.endswith(SPILL_SUFFIX)
    assert s.path.stat().st_size == s.nbytes == a.nbytes + b.nbytes  # key-major: all of a's rows, then b's
    got_a, got_b = np.empty_like(a[:8]), np.empty_like(b)
    s.read_into("a", got_a)
    s.read_into("b", got_b)
    assert np.array_equal(got_a, a[:8]) and np.array_equal(got_b, b)
    with pytest.raises(ValueError, match="do not fit"):
        s.write("a", 8, a[:4])
    path = s.path
    s.close()
    s.close()
    assert not path.exists() and s.path is None


def test_a_truncated_spill_is_an_error_not_zeros(tmp_path):
    s = Spill(tmp_path, 0, 4, {"a": 8})
    s.write("a", 0, np.ones((2, 2), np.float32))
    with pytest.raises(StoreError, match="ended early"):
        s.read_into("a", np.empty((4, 2), np.float32))
    s.close()


def test_pieces_wait_in_one_spill_and_each_shard_is_written_once(tmp_path, monkeypatch):
    """The pieces of a unit are not written into its shards (Zarr would rewrite a shard per piece):
    they wait in one file beside the markers, and write_unit writes each key's rows once."""
    whole = make_store(tmp_path / "whole.zarr")
    for buf in _fill(None, monkeypatch, None):
        progress.write_unit(whole, buf)
    store = make_store(tmp_path / "pieces.zarr")
    calls: list[tuple[str, int, int]] = []
    real = store.backend.write_rows
    monkeypatch.setattr(store.backend, "write_rows", lambda g, name, start, rows: (calls.append((name, start, len(rows))), real(g, name, start, rows))[1])
    bufs = _fill(store, monkeypatch, 3)  # pieces of 2 rows
    assert calls == [], "no piece is written into the arrays before its unit's end"
    assert len(spills(tmp_path / "pieces.zarr")) == len(bufs), "one spill per unit"
    assert {p.parent.name for p in (tmp_path / "pieces.zarr").rglob(f"*{SPILL_SUFFIX}")} == {"val"}
    for buf in bufs:
        progress.write_unit(store, buf)
    for u, start in enumerate(range(0, N, UNIT)):
        size = min(UNIT, N - start)
        assert sorted(c for c in calls if c[1] == start) == sorted([(str(k), start, size) for k in KEYS] + [("valid", start, size)]), u
    assert spills(tmp_path / "pieces.zarr") == []
    assert shard_bytes(tmp_path / "whole.zarr") == shard_bytes(tmp_path / "pieces.zarr")
    a, b = whole.markers("val"), store.markers("val")
    assert [(m["digests"], m["prints"]) for m in a.values()] == [(m["digests"], m["prints"]) for m in b.values()]


def test_units_a_failed_writer_drops_take_their_spills_with_them(tmp_path, monkeypatch):
    store = make_store(tmp_path / "s.zarr")
    bufs = _fill(store, monkeypatch, 3)
    assert len(spills(tmp_path / "s.zarr")) == len(bufs)
    monkeypatch.setattr(store.backend, "write_marker", lambda *a: (_ for _ in ()).throw(OSError("disk gone")))
    w = BackgroundWriter(store, threads=1)
    given = []
    with pytest.raises(OSError, match="disk gone"):
        for buf in bufs:  # the first unit fails; later ones are dropped, by the threads or by submit
            given.append(buf.task.unit)
            w.submit(buf)
            time.sleep(0.05)
    with pytest.raises(OSError, match="disk gone"):
        w.close()
    assert 1 < len(given) < len(bufs)
    left = {int(name.split(".")[1].split("-")[1]) for name in spills(tmp_path / "s.zarr")}
    assert left == {b.task.unit for b in bufs} - set(given), "written, failed or dropped: no unit given to the writer keeps its spill"


def test_a_backend_that_writes_rows_in_place_takes_pieces_at_once(tmp_path, monkeypatch):
    """HDF5 writes rows in place: pieces go into the arrays as they fill, with no spill, to the same values."""
    store = create_store(tmp_path / "s.h5", {"config": {"test": True}})
    ids = [f"i{i:03d}" for i in range(N)]
    store.create_split("val", ids, ids, list(range(N)), UNIT)
    for k in KEYS:
        store.create_feature_array("val", k, LAYOUTS[k], "float16", "m")
    assert store.backend.spill_folder("val") is None
    bufs = _fill(store, monkeypatch, 3)
    for buf in bufs:
        progress.write_unit(store, buf)
    whole = make_store(tmp_path / "whole.zarr")
    for buf in _fill(None, monkeypatch, None):
        progress.write_unit(whole, buf)
    for k in KEYS:
        assert np.array_equal(store.read("val", str(k)), whole.read("val", str(k)), equal_nan=True)
    assert spills(tmp_path) == []


def test_units_held_whole_never_spill(tmp_path):
    store = make_store(tmp_path / "s.zarr")
    for buf in units():
        progress.write_unit(store, buf)
    assert spills(tmp_path) == [] and len(store.markers("val")) == 5
