"""What the read path's integrity check costs a probe (see ``diffprobe/store/verified.py``).

A synthetic store (x = μ_y + ε, written by extraction's own writer, so its done markers record row
prints and digests as an extracted store's do) is read as ``diffprobe probe`` reads it — the train
and the eval split through ``load_features`` — with the check and without it (``ReadCheck.enabled``),
alternated (which goes first too), the minimum of ``--repeats`` runs shown; and, since whole reads
vary by several percent on a shared machine, the time spent inside the check itself, as a share of
the read without it. A second copy whose markers lack row prints (a store written before they were
recorded) shows the fallback: the digest of every unit read::

    python benchmarks/read_integrity.py                                       # 40,000 + 10,000 items × 256×2×2
    python benchmarks/read_integrity.py --items 20000 --channels 512 --size 4  # wider rows (390 MiB)
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import tempfile
import time
from pathlib import Path

from synthetic_store import class_means, write_synthetic


def probe_read(path: Path, key: str) -> float:
    """Seconds to read what a probe reads: every train row, view 0 of every eval row."""
    from diffprobe.probes.data import load_features
    from diffprobe.store.store import open_store

    t0 = time.perf_counter()
    with open_store(path) as store:
        load_features(store, "train", [key], lazy=False)
        load_features(store, "val", [key], lazy=False, first_view=True)
    return time.perf_counter() - t0


def check_seconds(path: Path, key: str) -> float:
    """Seconds a probe's read spends inside the check itself (marker snapshots, prints, digests): a
    figure the machine's noise barely moves, unlike the difference of two whole reads."""
    from diffprobe.store.verified import ReadCheck

    spent = [0.0]
    originals = {name: getattr(ReadCheck, name) for name in ("_check", "_markers")}

    def timed(fn):
        def call(*a, **k):
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                spent[0] += time.perf_counter() - t0

        return call

    table = ReadCheck._table

    def table_check(self, split, name, sel):  # the table's read is the reader's; its check is ours
        t0 = time.perf_counter()
        self.store.backend.read_rows(split, name, sel)
        read = time.perf_counter() - t0
        t0 = time.perf_counter()
        out = table(self, split, name, sel)
        spent[0] += max(0.0, time.perf_counter() - t0 - read)
        return out

    try:
        for name, fn in originals.items():
            setattr(ReadCheck, name, timed(fn))
        ReadCheck._table = table_check  # type: ignore[method-assign]
        probe_read(path, key)
    finally:
        for name, fn in originals.items():
            setattr(ReadCheck, name, fn)
        ReadCheck._table = table  # type: ignore[method-assign]
    return spent[0]


def strip_prints(path: Path) -> None:
    """Make ``path`` look like a store written before row prints were recorded (digests only): its
    done markers' and its splits' item tables'."""
    for f in [*(path / "_progress").rglob("unit-*.json"), *(path / s / "zarr.json" for s in ("train", "val"))]:
        doc = json.loads(f.read_text())
        for record in (doc, doc.get("attributes", {}).get("diffprobe", {})):
            record.pop("prints", None)
            record.pop("print", None)
        f.write_text(json.dumps(doc))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=40_000, help="train items (val: a quarter as many)")
    ap.add_argument("--channels", type=int, default=256)
    ap.add_argument("--size", type=int, default=2, help="pool size p: each item is C×p×p float16")
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=9, help="reads of each, alternated; the minimum is shown")
    ap.add_argument("--workdir", default=None, help="where the stores are written [default: a temporary folder]")
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    import torch

    from diffprobe.store.layout import FeatureKey
    from diffprobe.store.verified import ReadCheck

    shape = (args.channels, args.size, args.size)
    key = FeatureKey(0, 1, args.size)
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        new, old = Path(tmp) / "prints.zarr", Path(tmp) / "digests.zarr"
        counts = {"train": args.items, "val": max(1, args.items // 4)}
        written = write_synthetic(new, key, shape, counts, class_means(args.classes, shape, torch.device("cpu")), torch.device("cpu"),
                                  stop_at=float("inf"))  # fmt: skip
        shutil.copytree(new, old)
        strip_prints(old)
        unit = json.loads((new / "train" / "zarr.json").read_text())["attributes"]["diffprobe"]["unit_size"]
        probe_read(new, key.name)  # warm up: imports, the page cache
        best: dict[tuple[str, bool], float] = {}
        for i in range(args.repeats):
            for store in (new, old):
                for on in (False, True) if i % 2 == 0 else (True, False):  # which goes first alternates
                    ReadCheck.enabled = on
                    best[(store.name, on)] = min(best.get((store.name, on), float("inf")), probe_read(store, key.name))
        ReadCheck.enabled = True
        inside = {name: min(check_seconds(store, key.name) for _ in range(3)) for store, name in ((new, "prints.zarr"), (old, "digests.zarr"))}
    mib = written.nbytes / 2**20
    print(f"read_integrity: {counts['train']:,} train + {counts['val']:,} val items × 1 key of {'×'.join(map(str, shape))} float16 "
          f"({mib:.1f} MiB), units of {unit} items; minimum of {args.repeats} reads each")  # fmt: skip
    print(f"{'':<34}{'without':>10}{'with':>10}{'cost':>9}{'in the check':>15}{'cost':>8}")
    rows = (("probe read (row prints)", "prints.zarr", "every store written now"),
            ("probe read (digest fallback)", "digests.zarr", "stores written before row prints"))  # fmt: skip
    for label, name, note in rows:
        off, on = best[(name, False)], best[(name, True)]
        print(f"{label:<34}{off:>9.3f}s{on:>9.3f}s{100 * (on / off - 1):>8.1f}%{inside[name]:>14.3f}s"
              f"{100 * inside[name] / off:>7.1f}%   ({note})")  # fmt: skip
    cost = 100 * inside["prints.zarr"] / best[("prints.zarr", False)]
    print("cost = with / without − 1 (whole reads, noisy on a shared machine); in the check = the time spent inside it, "
          "as a share of the read without it")  # fmt: skip
    print(f"target ≤ 5% for stores written now: {'met' if cost <= 5 else 'MISSED'} ({cost:.1f}% in the check)")


if __name__ == "__main__":
    main()
