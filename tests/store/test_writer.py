"""BackgroundWriter: several writer threads write what one writes; errors, close and memory bounds."""

from __future__ import annotations

import threading
import time
import types
from pathlib import Path

import numpy as np
import pytest

import diffprobe.store.progress as progress
from diffprobe.store.arrays import ArrayLayout
from diffprobe.store.digests import digest
from diffprobe.store.layout import FeatureKey
from diffprobe.store.progress import BackgroundWriter, UnitBuffer, UnitTask, writer_threads
from diffprobe.store.store import FeatureStore, create_store, open_store

KEYS = (FeatureKey(50, 7, 2), FeatureKey(50, 7, None))
SHAPES = {KEYS[0]: (4, 2, 2), KEYS[1]: (4, 4, 4)}
LAYOUTS = {k: ArrayLayout.of_map(*s) for k, s in SHAPES.items()}
UNIT, N = 8, 36  # the last unit is partial


def make_store(path: Path) -> FeatureStore:
    store = create_store(path, {"config": {"test": True}})
    ids = [f"i{i:03d}" for i in range(N)]
    store.create_split("val", ids, ids, list(range(N)), UNIT)
    for k in KEYS:
        store.create_feature_array("val", k, LAYOUTS[k], "float16", "m")
    return store


def units(nan_unit: int | None = 2) -> list[UnitBuffer]:
    """Finished units of random rows; every item of unit ``nan_unit`` failed (its rows are NaN)."""
    rng = np.random.default_rng(1)
    out = []
    for u, start in enumerate(range(0, N, UNIT)):
        stop = min(start + UNIT, N)
        buf = UnitBuffer(UnitTask("val", u, start, stop, KEYS), SHAPES, "float16")
        ok = np.ones(stop - start, dtype=bool)
        if u == nan_unit:
            ok[:] = False
        feats = {k: rng.standard_normal((stop - start, *SHAPES[k])).astype(np.float16) for k in KEYS}
        buf.add(start, feats, ok, [(f"i{start + i:03d}", "bad") for i in np.flatnonzero(~ok)])
        out.append(buf)
    return out


def shard_bytes(path: Path) -> dict[str, bytes]:
    return {str(f.relative_to(path)): f.read_bytes() for f in sorted(path.rglob("c/**/*")) if f.is_file()}


@pytest.mark.parametrize("threads", [2, 4])
def test_several_threads_write_the_bytes_one_thread_writes(tmp_path, threads):
    stores = {}
    for n in (1, threads):
        store = make_store(tmp_path / f"{n}.zarr")
        w = BackgroundWriter(store, threads=n)
        assert len(w.threads) == n
        for buf in units():
            w.submit(buf)
        w.close()
        assert w.units_written == 5 and w.bytes_written == sum(a.nbytes for b in units() for a in b.data.values())
        stores[n] = store
    one, many = shard_bytes(tmp_path / "1.zarr"), shard_bytes(tmp_path / f"{threads}.zarr")
    assert one.keys() == many.keys() and one == many
    assert f"val/{KEYS[1]}/c/2/0/0/0" not in one and f"val/{KEYS[1]}/c/3/0/0/0" in one  # an all-NaN shard is left out
    for n, store in stores.items():
        marks = store.markers("val")
        assert sorted(marks) == list(range(5))
        assert marks[2]["failed"] == [[f"i{16 + i:03d}", "bad"] for i in range(8)]
        for u, buf in enumerate(units()):
            for k in KEYS:
                assert marks[u]["digests"][str(k)] == digest(buf.data[k])
        store.close()
    with open_store(tmp_path / f"{threads}.zarr") as s:
        got = s.read_array("val", str(KEYS[1]))
        assert np.isnan(got[16:24]).all() and not np.isnan(got[:16]).any() and not np.isnan(got[24:]).any()


def test_writing_empty_chunks_changes_no_byte(tmp_path, monkeypatch):
    """The fast path (no comparison with the fill value) is taken only where it writes the same bytes."""
    import diffprobe.store.zarr_backend as zb

    got = {}
    for fast in (True, False):
        if not fast:
            monkeypatch.setattr(zb, "_no_empty_chunk", lambda *a: False)
        store = make_store(tmp_path / f"{fast}.zarr")
        for buf in units():
            progress.write_unit(store, buf)
        got[fast] = shard_bytes(tmp_path / f"{fast}.zarr")
    assert got[True] == got[False]


def test_no_empty_chunk_checks_each_touched_chunk(tmp_path):
    from diffprobe.store.zarr_backend import _no_empty_chunk

    store = make_store(tmp_path / "s.zarr")
    a = store.backend._array("val", str(KEYS[0]))  # type: ignore[attr-defined]
    rows = a.chunks[0]
    data = np.ones((2 * rows, *SHAPES[KEYS[0]]), dtype=np.float16)
    assert _no_empty_chunk(a, 0, data) and _no_empty_chunk(a, 1, data[:rows])
    data[rows, 0, 0, 0] = np.nan  # the first value of the second chunk
    assert not _no_empty_chunk(a, 0, data) and _no_empty_chunk(a, 1, data)
    assert not _no_empty_chunk(store.backend._array("val", "valid"), 0, np.ones(4, bool))  # type: ignore[attr-defined]


def test_hdf5_stores_get_one_writer_thread(tmp_path):
    store = create_store(tmp_path / "s.h5", {"config": {}})
    assert writer_threads(store) == 1
    w = BackgroundWriter(store, threads=4)
    assert len(w.threads) == 1
    w.close()
    store.close()
    assert writer_threads(make_store(tmp_path / "s.zarr")) >= 1


class SlowStore:
    """Stands in for a store: records what ``write_unit`` was called with, slowly."""

    format = "zarr"
    backend = types.SimpleNamespace(concurrent_writers=True)

    def __init__(self, delay: float, fail_unit: int | None = None) -> None:
        self.delay, self.fail_unit = delay, fail_unit
        self.started: list[int] = []
        self.written: list[int] = []
        self.lock = threading.Lock()


@pytest.fixture
def slow_writes(monkeypatch):
    def fake(store, buf):
        with store.lock:
            store.started.append(buf.task.unit)
        time.sleep(store.delay)
        if buf.task.unit == store.fail_unit:
            raise OSError(28, "No space left on device")
        with store.lock:
            store.written.append(buf.task.unit)
        return 1

    monkeypatch.setattr(progress, "write_unit", fake)


def bufs(n: int) -> list[UnitBuffer]:
    return [UnitBuffer(UnitTask("val", u, u, u + 1, ()), {}, "float16") for u in range(n)]


def test_close_waits_for_every_unit(slow_writes):
    store = SlowStore(0.05)
    w = BackgroundWriter(store, threads=3)  # type: ignore[arg-type]
    for b in bufs(7):
        w.submit(b)
    w.close()
    assert sorted(store.written) == list(range(7)) and w.units_written == 7 and w.bytes_written == 7
    assert not any(t.is_alive() for t in w.threads)


def test_submit_blocks_while_depth_units_wait(slow_writes):
    store = SlowStore(0.3)
    w = BackgroundWriter(store, depth=2, threads=2)  # type: ignore[arg-type]
    t0 = time.perf_counter()
    for b in bufs(4):  # two taken by the threads, two waiting: none blocks
        w.submit(b)
    assert time.perf_counter() - t0 < 0.25
    w.submit(bufs(5)[4])  # the fifth waits for a thread to take one
    assert time.perf_counter() - t0 >= 0.25
    held = len(store.started) - len(store.written) + w.q.qsize()
    assert held <= 2 + 2
    w.close()


def test_an_error_on_a_writer_thread_surfaces_at_submit_and_close(slow_writes):
    store = SlowStore(0.02, fail_unit=1)
    w = BackgroundWriter(store, depth=1, threads=2)  # type: ignore[arg-type]
    with pytest.raises(OSError, match="No space"):
        for b in bufs(50):
            w.submit(b)
    with pytest.raises(OSError, match="No space"):
        w.close()
    assert 1 not in store.written and len(store.started) < 50  # later units are dropped, not written
    assert not any(t.is_alive() for t in w.threads)


def test_a_marker_follows_its_units_data(tmp_path, monkeypatch):
    store = make_store(tmp_path / "s.zarr")
    events: list[tuple[str, int]] = []
    lock = threading.Lock()
    real_rows, real_marker = store.backend.write_rows, store.backend.write_marker

    def rows(group, name, start, data):
        real_rows(group, name, start, data)
        with lock:
            events.append(("data", start // UNIT))

    def marker(group, unit, payload):
        with lock:
            events.append(("marker", unit))
        real_marker(group, unit, payload)

    monkeypatch.setattr(store.backend, "write_rows", rows)
    monkeypatch.setattr(store.backend, "write_marker", marker)
    w = BackgroundWriter(store, threads=3)
    for buf in units():
        w.submit(buf)
    w.close()
    for u in range(5):
        mine = [e for e, v in events if v == u]
        assert mine == ["data"] * (len(KEYS) + 1) + ["marker"], (u, events)


def _fill(store: FeatureStore | None, monkeypatch, budget_rows: int | None) -> list[UnitBuffer]:
    """Every unit filled 3 rows at a time (batches that straddle pieces), item 5 of each failed;
    with ``budget_rows``, the buffers may hold that many rows of every key at once."""
    if budget_rows is not None:
        row = sum(int(np.prod(s)) for s in SHAPES.values()) * 2
        monkeypatch.setattr(progress, "MAX_UNIT_BYTES", budget_rows * row)
    rng = np.random.default_rng(3)
    bufs = []
    for u, start in enumerate(range(0, N, UNIT)):
        stop = min(start + UNIT, N)
        buf = UnitBuffer(UnitTask("val", u, start, stop, KEYS), SHAPES, "float16", store)
        for lo in range(start, stop, 3):
            hi = min(lo + 3, stop)
            ok = np.arange(lo, hi) - start != 5
            feats = {k: rng.standard_normal((hi - lo, *SHAPES[k])).astype(np.float16) for k in KEYS}
            buf.add(lo, feats, ok, [(f"i{lo + i:03d}", "bad") for i in np.flatnonzero(~ok)])
        bufs.append(buf)
    return bufs


def test_a_unit_over_the_buffer_budget_is_written_in_pieces_to_the_same_bytes(tmp_path, monkeypatch):
    """Units grown for few files (native maps of many keys) hold a piece at a time; the shards, the
    valid rows and the markers' digests and row prints are those of units held whole."""
    whole, pieces = make_store(tmp_path / "whole.zarr"), make_store(tmp_path / "pieces.zarr")
    for buf in _fill(None, monkeypatch, None):
        progress.write_unit(whole, buf)
    bufs = _fill(pieces, monkeypatch, 3)  # 3 rows fit: pieces of 2 (a power of two), batches of 3 straddle them
    assert all(b.rows == 2 and b.data[KEYS[1]].shape[0] == 2 for b in bufs)
    assert not pieces.markers("val"), "pieces are written, but no unit is done before write_unit"
    for buf in bufs:
        progress.write_unit(pieces, buf)
    assert shard_bytes(tmp_path / "whole.zarr") == shard_bytes(tmp_path / "pieces.zarr")
    a, b = whole.markers("val"), pieces.markers("val")
    assert a.keys() == b.keys() == set(range(5))
    for u in a:
        assert (a[u]["digests"], a[u]["prints"], a[u]["failed"]) == (b[u]["digests"], b[u]["prints"], b[u]["failed"])
    read = open_store(tmp_path / "pieces.zarr")
    assert np.isnan(read.read("val", str(KEYS[1]))[5]).all() and not read.valid("val")[5] and read.valid("val")[6]


def test_a_unit_stopped_between_pieces_is_not_done(tmp_path, monkeypatch):
    store = make_store(tmp_path / "s.zarr")
    row = sum(int(np.prod(s)) for s in SHAPES.values()) * 2
    monkeypatch.setattr(progress, "MAX_UNIT_BYTES", 2 * row)
    buf = UnitBuffer(UnitTask("val", 0, 0, UNIT, KEYS), SHAPES, "float16", store)
    buf.add(0, {k: np.ones((5, *SHAPES[k]), np.float16) for k in KEYS}, np.ones(5, bool), [])
    assert buf.base == 4, "two pieces of 2 rows are put aside"
    assert store.markers("val") == {}  # a stop here redoes the whole unit
    # the pieces wait in a spill file (see test_spill.py), not in the shards; dropping the unit removes it
    spilled = list((tmp_path / "s.zarr").rglob("*.spill"))
    assert len(spilled) == 1 and not [f for f in shard_bytes(tmp_path / "s.zarr") if f.startswith("val/t")]
    buf.discard()
    assert not spilled[0].exists() and np.isnan(open_store(tmp_path / "s.zarr").read("val", str(KEYS[0]))).all()
