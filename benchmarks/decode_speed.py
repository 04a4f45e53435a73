"""Decode throughput: the same images read from WebDataset tar shards and as loose files.

Writes N images (the bundled Fashion-MNIST slice, upscaled to --size and re-encoded as JPEG, so that
decoding costs what it costs on real photographs) once as loose files listed by a manifest and once
as tar shards of --per-shard images, then runs extraction's own loader (``ImageDataset`` in a torch
``DataLoader`` over contiguous batches, as ``diffprobe extract`` reads) over each, with each loader
worker count. Prints images per second, the best of --repeats passes::

    python benchmarks/decode_speed.py                          # 3,000 images at 256 px, workers 0 and 2
    python benchmarks/decode_speed.py --images 10000 --workers 0,1,2,4

The page cache is warm for both (each pass reads what the one before read), so the figures compare
the readers, not the disk; on a parallel file system, many small files cost more than this shows.
"""

from __future__ import annotations

import argparse
import io
import logging
import tarfile
import tempfile
import time
from pathlib import Path

from PIL import Image
from torch.utils.data import DataLoader

import diffprobe
from diffprobe.extract.dataset import ImageDataset
from diffprobe.extract.sources.discover import discover
from diffprobe.pipelines.extraction.loading import collate

ASSETS = Path(diffprobe.__file__).parent / "assets"


def write_data(root: Path, n: int, size: int, per_shard: int) -> tuple[Path, str]:
    """(manifest of loose files, brace pattern of the tars) holding the same n JPEG images."""
    sources = sorted((ASSETS / "fmnist").rglob("*.png"))
    (root / "files").mkdir()
    (root / "tars").mkdir()
    rows = ["path,label,id"]
    shard: tarfile.TarFile | None = None
    for i in range(n):
        src = sources[i % len(sources)]
        buf = io.BytesIO()
        Image.open(src).convert("RGB").resize((size, size), Image.Resampling.BICUBIC).save(buf, "JPEG", quality=90)
        data, key = buf.getvalue(), f"img{i:07d}"
        (root / "files" / f"{key}.jpg").write_bytes(data)
        rows.append(f"files/{key}.jpg,{src.parent.name},{key}")
        if i % per_shard == 0:
            if shard is not None:
                shard.close()
            shard = tarfile.open(root / "tars" / f"shard-{i // per_shard:06d}.tar", "w")
        info = tarfile.TarInfo(f"{key}.jpg")
        info.size = len(data)
        shard.addfile(info, io.BytesIO(data))  # type: ignore[union-attr]
    if shard is not None:
        shard.close()
    (root / "files.csv").write_text("\n".join(rows) + "\n")
    last = (n - 1) // per_shard
    return root / "files.csv", str(root / "tars" / f"shard-{{000000..{last:06d}}}.tar")


def images_per_second(data: str, size: int, workers: int, batch: int, repeats: int, index: Path) -> float:
    items = discover(data, index=index).splits["train"]
    best = float("inf")
    for _ in range(repeats):
        batches = [list(range(s, min(s + batch, len(items)))) for s in range(0, len(items), batch)]
        loader = DataLoader(ImageDataset(items, size), batch_sampler=batches, num_workers=workers, collate_fn=collate)
        t0 = time.perf_counter()
        n = sum(len(chunk[0]) for chunk in loader)
        best = min(best, time.perf_counter() - t0)
        assert n == len(items)
    return len(items) / best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=3000)
    ap.add_argument("--size", type=int, default=256, help="side of the stored JPEGs (decoded and resized to it)")
    ap.add_argument("--per-shard", type=int, default=500)
    ap.add_argument("--workers", default="0,2", help="loader worker counts to run")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        manifest, pattern = write_data(root, args.images, args.size, args.per_shard)
        mb = sum(f.stat().st_size for f in (root / "files").iterdir()) / 2**20
        print(f"{args.images} JPEG images of {args.size}×{args.size} ({mb:.0f} MiB), tars of {args.per_shard}; best of {args.repeats}")
        print(f"{'loader workers':>14}  {'loose files':>12}  {'tar shards':>12}  tars/files")
        for w in (int(v) for v in args.workers.split(",")):
            files = images_per_second(str(manifest), args.size, w, args.batch, args.repeats, root / "i1.json")
            tars = images_per_second(pattern, args.size, w, args.batch, args.repeats, root / "i2.json")
            print(f"{w:>14}  {files:>8.0f} /s  {tars:>8.0f} /s  {tars / files:>9.2f}×")


if __name__ == "__main__":
    main()
