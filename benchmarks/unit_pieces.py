"""A unit too large for host memory, written three ways: the cost of holding it a piece at a time.

One work unit of --unit-size items × --keys keys of (--channels, --size, --size) float16 rows (default
1,024 × 16 × 32×32×32: 1 GiB) is filled batch by batch into a :class:`~diffprobe.store.progress.UnitBuffer`
and written with :func:`~diffprobe.store.progress.write_unit` into a Zarr store laid out as extraction
lays one out (one shard per key for the unit). Each way runs in its own process, so that its peak RSS
is its own:

- **held whole** (the baseline, the same unit's bytes): every key's rows in memory until the end;
- **pieces into the shards** (how pieces were written before): a piece of --piece bytes at a time,
  each written into the unit's shards at once — Zarr rewrites a shard whole, so k pieces write
  (k + 1) / 2 × the unit's bytes;
- **pieces spilled** (now): the full pieces wait in one temporary file beside the markers and each
  key's shard is written once at the end (:mod:`~diffprobe.store.spill`): 2 × the unit's bytes.

Prints the time of filling + writing, the bytes the process wrote (``wchar`` of /proc/self/io), and its
peak RSS above what it held before the unit, each against held whole; the stored shards of the three
must be the same bytes::

    python benchmarks/unit_pieces.py                        # 1 GiB unit, pieces of 128 MiB
    python benchmarks/unit_pieces.py --unit-size 2048 --dir /scratch
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from results import Row, append

log = logging.getLogger("unit_pieces")
WAYS = {"whole": "held whole", "in-place": "pieces into the shards", "spilled": "pieces spilled"}
SPLIT = "val"


def written() -> int:
    """Bytes this process has passed to write calls so far."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    return 0


def rss_mib() -> float:
    return float(Path("/proc/self/statm").read_text().split()[1]) * resource.getpagesize() / 2**20


def one_way(args: argparse.Namespace) -> dict:
    """Fill and write the unit the way ``args.way`` says, in this process."""
    import diffprobe.store.progress as progress
    from diffprobe.store.arrays import ArrayLayout
    from diffprobe.store.layout import FeatureKey
    from diffprobe.store.progress import UnitBuffer, UnitTask, write_unit
    from diffprobe.store.store import create_store
    from diffprobe.store.zarr_backend import ZarrBackend

    n, shape = args.unit_size, (args.channels, args.size, args.size)
    keys = tuple(FeatureKey(50, b, None) for b in range(1, args.keys + 1))
    path = Path(args.dir) / f"{args.way}.zarr"
    store = create_store(path, {"config": {"benchmark": "unit_pieces"}})
    ids = [f"img{i:07d}" for i in range(n)]
    store.create_split(SPLIT, ids, ids, [0] * n, n)
    for k in keys:
        store.create_feature_array(SPLIT, k, ArrayLayout.of_map(*shape), "float16", "benchmark")
    progress.MAX_UNIT_BYTES = 1 << 62 if args.way == "whole" else args.piece
    if args.way == "in-place":
        ZarrBackend.spill_folder = lambda self, group: None  # type: ignore[method-assign]
    rng = np.random.default_rng(0)
    block = {k: rng.standard_normal((args.batch, *shape)).astype(np.float16) for k in keys}
    before_rss, before_io = rss_mib(), written()
    t = time.perf_counter()
    buf = UnitBuffer(UnitTask(SPLIT, 0, 0, n, keys), dict.fromkeys(keys, shape), "float16", store)
    for lo in range(0, n, args.batch):
        m = min(args.batch, n - lo)
        buf.add(lo, {k: block[k][:m] + np.float16(lo % 7) for k in keys}, np.ones(m, bool), [])
    pieces = n // buf.rows + (n % buf.rows > 0)
    write_unit(store, buf)
    seconds = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    shards = hashlib.sha256()
    for f in sorted(path.rglob("c/*")):
        if f.is_file() and f.parts[-4].startswith("t"):  # the feature arrays' shards
            shards.update(f.read_bytes())
    left = [str(p) for p in path.rglob("*.spill")]
    return {"way": args.way, "seconds": seconds, "written": written() - before_io, "peak_above": peak - before_rss,
            "pieces": pieces, "shards": shards.hexdigest(), "left": left}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--unit-size", type=int, default=1024, help="items in the unit")
    ap.add_argument("--keys", type=int, default=16)
    ap.add_argument("--channels", type=int, default=32)
    ap.add_argument("--size", type=int, default=32, help="the native map's side")
    ap.add_argument("--piece", type=int, default=128 << 20, help="bytes of every key's rows held at once (MAX_UNIT_BYTES)")
    ap.add_argument("--batch", type=int, default=64, help="rows added at a time")
    ap.add_argument("--dir", default=None, help="where the stores go (a temporary folder inside it, removed after)")
    ap.add_argument("--way", choices=list(WAYS), help=argparse.SUPPRESS)
    ap.add_argument("--json", default=None, help="append the figures to this results file (benchmarks/results.py)")
    args = ap.parse_args()
    if args.way:
        print(json.dumps(one_way(args)))
        return
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    root = Path(tempfile.mkdtemp(prefix="unit_pieces-", dir=args.dir))
    unit = args.unit_size * args.keys * args.channels * args.size**2 * 2
    print(f"one unit of {args.unit_size:,} items × {args.keys} keys of {args.channels}×{args.size}×{args.size} float16 = "
          f"{unit / 2**20:,.0f} MiB; pieces of {args.piece / 2**20:,.0f} MiB; stores under {root}")  # fmt: skip
    runs = {}
    try:
        for way in WAYS:
            sizes = [f"--{a.replace('_', '-')}={getattr(args, a)}" for a in ("unit_size", "keys", "channels", "size", "piece", "batch")]
            cmd = [sys.executable, __file__, *sizes, "--way", way, "--dir", str(root)]
            r = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if r.returncode != 0:
                raise SystemExit(f"{way} failed:\n{r.stderr[-3000:]}")
            runs[way] = json.loads(r.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(root, ignore_errors=True)
    w = runs["whole"]
    print(f"\n{'way':<24} {'pieces':>6} {'seconds':>8} {'× whole':>8} {'written MiB':>12} {'× unit':>7} {'peak RSS above MiB':>19}")
    rows = []
    for way, r in runs.items():
        print(f"{WAYS[way]:<24} {r['pieces']:>6} {r['seconds']:>8.2f} {r['seconds'] / w['seconds']:>7.2f}× "
              f"{r['written'] / 2**20:>12,.0f} {r['written'] / unit:>6.2f}× {r['peak_above']:>19,.0f}")  # fmt: skip
        rows += [Row(f"unit pieces: {WAYS[way]}, seconds", r["seconds"], "s", f"{r['seconds'] / w['seconds']:.2f}× held whole"),
                 Row(f"unit pieces: {WAYS[way]}, bytes written", r["written"] / unit, "× unit", f"{r['pieces']} piece(s)"),
                 Row(f"unit pieces: {WAYS[way]}, peak RSS above start", r["peak_above"], "MiB", "")]  # fmt: skip
    same = len({r["shards"] for r in runs.values()}) == 1
    print(f"\nstored shards: {'the same bytes in all three' if same else 'DIFFERENT'}; spill files left: {sum(len(r['left']) for r in runs.values())}")
    append(args.json, "unit_pieces", rows, device="cpu")
    if not same or any(r["left"] for r in runs.values()):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
