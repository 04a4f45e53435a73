"""Memory of dense-probe training as the number of training images grows 4×.

Builds two stores of the bundled Fashion-MNIST garment masks (block --block's native maps at t = 90):
one with N training images, one with 4N (the slice repeated under new ids), each with the same 100
validation images; then trains the linear dense head on each in a fresh process and prints the
process's peak RSS and the time. With a fixed --max-memory window the peak should not grow with N::

    python benchmarks/dense_memory.py                      # N = 500 and 2,000, a 4 MiB window (224 items)
    python benchmarks/dense_memory.py --n 1000 --max-memory 64MiB
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import diffprobe
from diffprobe.extract.sources.fmnist_masks import write_fmnist_masks

TRAIN = """
import json, sys, time
import diffprobe
from diffprobe.probes.dense.run import dense_probe
from diffprobe.probes.result import ProbeConfig
from diffprobe.sizes import parse_size

def status(field):  # kB → MiB, from /proc/self/status (Linux)
    line = next(l for l in open("/proc/self/status") if l.startswith(field + ":"))
    return int(line.split()[1]) / 1024

store, key, budget, epochs = sys.argv[1], sys.argv[2], parse_size(sys.argv[3]), int(sys.argv[4])
open("/proc/self/clear_refs", "w").write("5")  # reset the peak (VmHWM) to the current RSS: imports do not count
before = status("VmRSS")
t0 = time.perf_counter()
with diffprobe.open_store(store) as s:
    r = dense_probe(s, ProbeConfig("dense", (key,), {"epochs": epochs, "max_memory": budget}))
print(json.dumps({"peak_mib": status("VmHWM"), "import_mib": before, "seconds": time.perf_counter() - t0,
                  "miou": r.metrics["miou"], "train": r.n_train}))
"""


def make_store(root: Path, n_train: int, block: int, val_per_class: int) -> Path:
    # Only the masks the store repeats: up to 100 training images per class (10 classes).
    base = write_fmnist_masks(root / "masks", per_class_train=min(100, -(-n_train // 10)), per_class_val=val_per_class)
    rows = base.read_text().splitlines()
    train = [r for r in rows[1:] if ",train," in r]
    val = [r for r in rows[1:] if ",val," in r]
    out_rows = [rows[0]] + val
    for i in range(n_train):  # the slice repeated under new ids: the same pixels, more items
        path, label, split, item_id, mask = train[i % len(train)].split(",")
        out_rows.append(",".join((path, label, split, f"copy{i // len(train)}/{item_id}", mask)))
    manifest = base.parent / f"seg-{n_train}.csv"  # beside the masks: their paths are relative to it
    manifest.write_text("\n".join(out_rows) + "\n")
    store = root / f"seg-{n_train}.zarr"
    diffprobe.extract_features(diffprobe.ExtractConfig(data=str(manifest), out=str(store), model="adm-32-fmnist", timesteps=(90,),
                                                       blocks=(block,), pools=(None,), device="cpu"), progress=False)  # fmt: skip
    return store


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=500, help="training images of the small store (the large one has 4×)")
    ap.add_argument("--block", type=int, default=12)
    ap.add_argument("--max-memory", default="4MiB")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--val-per-class", type=int, default=10, help="validation images per class, the same in both stores")
    ap.add_argument("--no-trim", dest="trim", action="store_false",
                    help="keep glibc's default trimming (freed heap memory stays in the RSS, so the peak shows the allocator too)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    key = f"t0090_b{args.block:02d}_full"
    with tempfile.TemporaryDirectory() as tmp:
        trim = "MALLOC_TRIM_THRESHOLD_=0" if args.trim else "glibc's default trimming"
        print(f"linear dense head on {key}, window {args.max_memory}, {args.epochs} epochs; peak RSS of a fresh process ({trim})")
        print(f"{'train images':>12}  {'store':>9}  {'peak RSS':>9}  {'after imports':>13}  {'training adds':>13}  {'time':>7}  mIoU")
        for n in (args.n, 4 * args.n):
            t0 = time.perf_counter()
            store = make_store(Path(tmp) / str(n), n, args.block, args.val_per_class)
            size = sum(f.stat().st_size for f in store.rglob("*") if f.is_file()) / 2**20
            env = {**os.environ, **({"MALLOC_TRIM_THRESHOLD_": "0"} if args.trim else {})}
            r = subprocess.run([sys.executable, "-c", TRAIN, str(store), key, args.max_memory, str(args.epochs)],
                               capture_output=True, text=True, check=True, env=env)  # fmt: skip
            m = json.loads(r.stdout.strip().splitlines()[-1])
            logging.info("store built in %.0f s", time.perf_counter() - t0)
            print(f"{m['train']:>12}  {size:>6.0f} MiB  {m['peak_mib']:>5.0f} MiB  {m['import_mib']:>9.0f} MiB  "
                  f"{m['peak_mib'] - m['import_mib']:>9.0f} MiB  {m['seconds']:>5.1f} s  {100 * m['miou']:.1f}%")  # fmt: skip


if __name__ == "__main__":
    main()
