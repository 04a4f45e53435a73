"""Writer throughput alone: finished units of native maps written to a Zarr store, on CPU.

Synthetic units of --unit-size items of (--channels, --size, --size) --dtype rows (default 1024×16×16
float16 = 512 KB per item, the native map of block 24 of the 256 model) go through the real path —
a store made with ``create_store`` + ``create_split`` + ``create_feature_array``, as extraction makes
it, then ``BackgroundWriter.submit`` … ``close`` — with each writer thread count in --threads (1 is
the single writer thread diffprobe had before; ``auto`` is the default now). Against that: raw file
writes of the same bytes (``ndarray.tofile`` per unit). A first row repeats the writer as it was (one thread, digests hashed from a copy, zarr comparing
every chunk with the fill value) for the same work. Neither side calls fsync; both write into the
same temporary folder (--dir), so both land in the page cache of the same disk. Then one unit's
:func:`~diffprobe.store.progress.write_unit`, taken apart on one thread: encode + write of the shards,
digests, done marker. Prints MB/s and items/s, the best of --repeats passes::

    python benchmarks/writer_speed.py                       # 6 units of 256 native maps, threads 1 and auto
    python benchmarks/writer_speed.py --threads 1,2,4 --units 8 --dir /scratch

The extraction's target: 750 img/s of 512 KB maps, about 400 MB/s.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

import diffprobe.store.progress as progress
import diffprobe.store.zarr_backend as zarr_backend
from diffprobe.store.arrays import ArrayLayout
from diffprobe.store.digests import unit_digests
from diffprobe.store.layout import FeatureKey
from diffprobe.store.progress import BackgroundWriter, UnitBuffer, UnitTask, writer_threads
from diffprobe.store.store import FeatureStore, create_store

from results import Row, append

SPLIT = "val"


def cpu_seconds() -> float:
    """User + system CPU seconds of this process so far, every thread included."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def make_store(path: Path, n: int, unit: int, keys: list[FeatureKey], shape: tuple[int, ...], dtype: str) -> FeatureStore:
    """An empty store laid out as extraction lays one out (sharded by unit, chunked near 1 MB)."""
    store = create_store(path, {"config": {"benchmark": "writer_speed"}})
    ids = [f"img{i:07d}" for i in range(n)]
    store.create_split(SPLIT, ids, ids, [0] * n, unit)
    for k in keys:
        store.create_feature_array(SPLIT, k, ArrayLayout.of_map(*shape[-3:], draws=shape[0] if len(shape) == 4 else 1), dtype, "benchmark")
    return store


def make_units(n_units: int, unit: int, keys: list[FeatureKey], shape: tuple[int, ...], dtype: str) -> list[UnitBuffer]:
    """Finished unit buffers of random values (activations' low bits are near random: zstd barely shrinks them)."""
    rng = np.random.default_rng(0)
    bufs = []
    for u in range(n_units):
        buf = UnitBuffer(UnitTask(SPLIT, u, u * unit, (u + 1) * unit, tuple(keys)), {k: shape for k in keys}, dtype)
        for k in keys:
            buf.data[k][...] = rng.standard_normal(buf.data[k].shape, dtype=np.float32)
        buf.valid[:] = True
        buf.filled = unit
        bufs.append(buf)
    return bufs


def raw(root: Path, bufs: list[UnitBuffer]) -> float:
    """Seconds to write every unit's arrays with ``tofile``, one file per (unit, array)."""
    root.mkdir()
    t0 = time.perf_counter()
    for buf in bufs:
        for k, a in buf.data.items():
            a.tofile(root / f"{k}-{buf.task.unit}")
        buf.valid.tofile(root / f"valid-{buf.task.unit}")
    return time.perf_counter() - t0


def copying_digests(data: dict[str, np.ndarray]) -> dict[str, str]:
    """``unit_digests`` as it was before: the same BLAKE2b values, hashed from a ``tobytes()`` copy."""
    out = {}
    for name, values in data.items():
        a = np.asarray(values)
        h = hashlib.blake2b(digest_size=16)
        h.update(f"{a.shape}".encode())
        h.update(a.dtype.str.encode())
        h.update(np.ascontiguousarray(a).tobytes())
        out[name] = h.hexdigest()
    return out


def through_writer(root: Path, bufs: list[UnitBuffer], threads: int, args: argparse.Namespace, keys: list[FeatureKey]) -> float:
    """Seconds from the first ``submit`` to the end of ``close`` (the store is made before)."""
    store = make_store(root, len(bufs) * args.unit_size, args.unit_size, keys, (args.channels, args.size, args.size), args.dtype)
    t0 = time.perf_counter()
    writer = BackgroundWriter(store, threads=threads)
    for buf in bufs:
        writer.submit(buf)
    writer.close()
    dt = time.perf_counter() - t0
    assert writer.units_written == len(bufs)
    store.close()
    return dt


def stages(root: Path, bufs: list[UnitBuffer], args: argparse.Namespace, keys: list[FeatureKey]) -> dict[str, float]:
    """Seconds per stage of ``write_unit`` over every unit, on this thread."""
    store = make_store(root, len(bufs) * args.unit_size, args.unit_size, keys, (args.channels, args.size, args.size), args.dtype)
    out = {"encode + write": 0.0, "digests": 0.0, "marker": 0.0}
    for buf in bufs:
        t0 = time.perf_counter()
        for k, a in buf.data.items():
            store.backend.write_rows(SPLIT, str(k), buf.task.start, a)
        store.backend.write_rows(SPLIT, "valid", buf.task.start, buf.valid)
        t1 = time.perf_counter()
        digests = unit_digests({**{str(k): a for k, a in buf.data.items()}, "valid": buf.valid})
        t2 = time.perf_counter()
        store.backend.write_marker(SPLIT, buf.task.unit, {"digests": digests, "start": buf.task.start})
        t3 = time.perf_counter()
        out["encode + write"] += t1 - t0
        out["digests"] += t2 - t1
        out["marker"] += t3 - t2
    store.close()
    return out


no_empty_chunk = zarr_backend._no_empty_chunk


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--channels", type=int, default=1024)
    ap.add_argument("--size", type=int, default=16, help="p: rows are (channels, p, p)")
    ap.add_argument("--dtype", default="float16")
    ap.add_argument("--keys", type=int, default=1, help="feature arrays per unit (each item writes one row to each)")
    ap.add_argument("--unit-size", type=int, default=256, help="items per unit (= per shard)")
    ap.add_argument("--units", type=int, default=6)
    ap.add_argument("--threads", default="1,auto", help="writer thread counts to run; 'auto' = the default")
    ap.add_argument("--repeats", type=int, default=2, help="passes of each; the best is shown")
    ap.add_argument("--dir", default=None, help="folder to write in (default: the system's temporary folder)")
    ap.add_argument("--json", default=None, help="append the figures (MB/s per path) to this file as one JSON line")
    args = ap.parse_args()
    keys = [FeatureKey(150, 24 + i, None) for i in range(args.keys)]
    bufs = make_units(args.units, args.unit_size, keys, (args.channels, args.size, args.size), args.dtype)
    nbytes = sum(a.nbytes for b in bufs for a in b.data.values())
    items = args.units * args.unit_size
    row = nbytes // items
    cpus = os.cpu_count() or 1
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        auto = writer_threads(make_store(Path(tmp) / "probe.zarr", 1, 1, [], (1,), args.dtype))
        counts = [auto if c == "auto" else int(c) for c in args.threads.split(",")]
        print(f"{args.units} units × {args.unit_size} items × {args.keys} key(s) of {args.channels}×{args.size}×{args.size} {args.dtype} "
              f"({row / 1024:g} KB per item, {nbytes / 1e6:.1f} MB in all); {cpus} CPU cores, auto = {auto} writer threads")  # fmt: skip
        print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        rows: dict[str, tuple[float, float]] = {}
        for r in range(args.repeats):
            runs: list[tuple[str, int | None]] = [("raw tofile (same bytes)", None), ("before: 1 thread (the old writer)", 0)]
            runs += [(f"BackgroundWriter, {c} thread(s)", c) for c in counts]
            for label, c in runs:
                d = Path(tmp) / f"run{r}-{c}"
                c0 = cpu_seconds()
                if c is None:
                    dt = raw(d, bufs)
                elif c == 0:  # the writer as it was: one thread, digests hashed from a copy, zarr's fill check
                    progress.unit_digests, zarr_backend._no_empty_chunk = copying_digests, lambda *a: False  # type: ignore[assignment]
                    try:
                        dt = through_writer(d, bufs, 1, args, keys)
                    finally:
                        progress.unit_digests, zarr_backend._no_empty_chunk = unit_digests, no_empty_chunk
                else:
                    dt = through_writer(d, bufs, c, args, keys)
                cpu = cpu_seconds() - c0
                if dt < rows.get(label, (float("inf"), 0.0))[0]:
                    rows[label] = (dt, cpu)
                shutil.rmtree(d)
        base = rows["raw tofile (same bytes)"][0]
        # CPU seconds per GB do not depend on how busy the machine is; "cores" = CPU time / wall time.
        print(f"\n{'path':<36} {'seconds':>8} {'MB/s':>8} {'items/s':>9} {'vs raw':>7} {'CPU s/GB':>9} {'cores':>6}")
        for label, (dt, cpu) in rows.items():
            print(f"{label:<36} {dt:8.2f} {nbytes / dt / 1e6:8.0f} {items / dt:9.0f} {base / dt:6.2f}× {cpu / nbytes * 1e9:9.2f} {cpu / dt:6.2f}")
        st = stages(Path(tmp) / "stages.zarr", bufs, args, keys)
        total = sum(st.values())
        print("\nwrite_unit taken apart, one thread:")
        for name, dt in st.items():
            print(f"  {name:<16} {dt:7.2f} s {100 * dt / total:5.1f}%  {nbytes / dt / 1e6:8.0f} MB/s")
        print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    out = [Row(f"writer: {label}", nbytes / dt / 1e6, "MB/s", f"{base / dt:.2f}× raw, {cpu / nbytes * 1e9:.2f} CPU s/GB")
           for label, (dt, cpu) in rows.items()]  # fmt: skip
    append(args.json, "writer_speed", out, cores=cpus, item_kb=row / 1024)


if __name__ == "__main__":
    main()
