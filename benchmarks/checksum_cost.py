"""What chunk checksums (crc32c) and unit digests (BLAKE2b) cost, on extraction and on reading.

Two runs of the same extraction in one process — the bundled model and slice, the given keys — one
with checksums and digests (the default), one without (crc32c left out of the codecs, digests not
computed); then every array of each store read back in full. Prints the time of each, and the cost
as a percentage of the run without; and what ``store verify`` (metadata only) and ``store verify
--deep`` (every chunk) take on the store with them::

    python benchmarks/checksum_cost.py                          # p = 2 features
    python benchmarks/checksum_cost.py --pool full --blocks 13  # native maps: the most bytes per image
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import diffprobe
import diffprobe.store.progress as progress
from diffprobe.store.inspect import verify_store
from diffprobe.store.integrity import deep_verify
from diffprobe.store.zarr_backend import ZarrBackend

from workload import slice_manifest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--blocks", default="10,13")
    ap.add_argument("--pool", default="2")
    ap.add_argument("--t", default="150")
    ap.add_argument("--splits", default="val", help="val: 500 images; train,val: 1,500")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--repeats", type=int, default=2, help="runs of each, alternated; the minimum is shown")
    ap.add_argument("--per-class", type=int, default=None, help="only the first K images of each class in each split (default: all)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    real_digests = progress.unit_digests
    best: dict[str, tuple[float, float, float, int]] = {}
    verify = {"plain": float("inf"), "deep": float("inf")}
    with tempfile.TemporaryDirectory() as tmp:
        data = str(slice_manifest(Path(tmp), None if args.per_class is None else (args.per_class, args.per_class)))
        for i, (label, on) in enumerate([("without", False), ("with", True)] * args.repeats):
            ZarrBackend.chunk_checksums = on
            progress.unit_digests = real_digests if on else (lambda data: {})  # type: ignore[assignment]
            cfg = diffprobe.ExtractConfig(
                data=data, out=str(Path(tmp) / f"{label}{i}.zarr"), model="adm-32-fmnist",
                timesteps=tuple(int(t) for t in args.t.split(",")), blocks=tuple(int(b) for b in args.blocks.split(",")),
                pools=tuple(None if p == "full" else int(p) for p in args.pool.split(",")), splits=tuple(args.splits.split(",")),
                device=args.device, unit_size=128,
            )  # fmt: skip
            s = diffprobe.extract_features(cfg, progress=False)
            reads = []
            for _ in range(5):
                t0 = time.perf_counter()
                with diffprobe.open_store(cfg.out) as store:
                    nbytes = sum(store.read(sp, k).nbytes for sp in store.splits for k in store.keys(sp))
                reads.append(time.perf_counter() - t0)
            for kind, check in (("plain", verify_store), ("deep", deep_verify)) if on else ():
                t0 = time.perf_counter()
                with diffprobe.open_store(cfg.out) as store:
                    assert check(store).ok  # type: ignore[operator]
                verify[kind] = min(verify[kind], time.perf_counter() - t0)
            old = best.get(label, (float("inf"), 0.0, float("inf"), 0))
            best[label] = (min(old[0], s.seconds), max(old[1], s.steady_items_per_second or 0.0), min(old[2], *reads), nbytes)
    ZarrBackend.chunk_checksums = True
    progress.unit_digests = real_digests  # type: ignore[assignment]
    (e0, r0, read0, nbytes), (e1, r1, read1, _) = best["without"], best["with"]
    print(f"extraction of {args.splits} at t={args.t}, blocks {args.blocks}, pool {args.pool}: {nbytes / 2**20:.1f} MiB of features")
    print(f"{'':<22}{'without':>10}{'with':>10}{'cost':>9}")
    print(f"{'extract: seconds':<22}{e0:>10.2f}{e1:>10.2f}{100 * (e1 / e0 - 1):>8.1f}%")
    print(f"{'extract: steady img/s':<22}{r0:>10.1f}{r1:>10.1f}{100 * (r0 / r1 - 1) if r1 else 0:>8.1f}%")
    print(f"{'read all: seconds':<22}{read0:>10.3f}{read1:>10.3f}{100 * (read1 / read0 - 1):>8.1f}%")
    print(f"store verify: {verify['plain']:.3f} s (metadata only); store verify --deep: {verify['deep']:.3f} s (every chunk)")


if __name__ == "__main__":
    main()
