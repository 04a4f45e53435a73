"""What augmented views cost and what they buy: extraction time against probe accuracy.

On the bundled Fashion-MNIST slice (1,000 train / 500 val images) through the bundled ADM-32
checkpoint at its best key (t = 90, block 12: the demo's logistic sweep), for V ∈ {1, 4, 8} views
(``--augment paper``: guided-diffusion's random crop + flip) × K ∈ {1, 4} kept noise draws:

- extraction: one store per (V, K) with ``t0090_b12_p1`` and ``t0090_b12_full``, timed end to end
  (model load, store creation, decoding, V·K forwards per image, writes) — each configuration is
  extracted on its own, so each time is what that configuration costs;
- the linear probe by the paper's recipe (SGD, lr 1e-2, 28 epochs, lr × 0.1 every 7, batch 128) on
  ``t0090_b12_p1``, and the attention head on ``t0090_b12_full`` (dim 64, 4 heads, depth 2, AdamW
  lr 1e-3, batch 32, ``--attention-epochs`` epochs): both train on every (view, draw) row, so the
  same number of epochs is V·K × the steps, and evaluate on view 0 of the val split, averaging
  the probabilities of its draws;
- the control: the same probes on the V = 1, K = 1 store trained for V·K × the epochs (the lr
  schedule scales with them), i.e. the same optimiser steps on the same images without augmentation
  or extra noise, so the table separates what the views add from what more steps add.

Prints one table (and the load average: on a shared machine other processes change every time).
Never asserts on time.

    python benchmarks/augment_views.py [--workdir DIR] [--views 1,4,8] [--draws 1,4]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
T, BLOCK = 90, 12


def extract(workdir: Path, views: int, draws: int, limit: int | None) -> tuple[Path, float, int]:
    """(store, seconds, bytes) of one configuration; an existing complete store is reused (time from its record)."""
    import diffprobe

    out = workdir / f"v{views}_k{draws}.zarr"
    data = ROOT / "diffprobe/assets/fmnist"
    if limit:
        data = subset_manifest(workdir, limit)
    cfg = diffprobe.ExtractConfig(
        data=str(data), out=str(out), model="adm-32-fmnist", checkpoint=str(ROOT / "diffprobe/assets/adm32_fmnist_ema.pt"),
        timesteps=(T,), blocks=(BLOCK,), pools=(1, None), views=views, augment="paper", draws=draws,
        reduce="none", batch_size=64,
    )  # fmt: skip
    timing = out.with_suffix(".seconds")
    if timing.exists():
        return out, float(timing.read_text()), _size(out)
    if out.exists():  # an interrupted earlier run: time the whole extraction, not its rest
        shutil.rmtree(out)
    t0 = time.perf_counter()
    diffprobe.extract_features(cfg, progress=False)
    seconds = time.perf_counter() - t0
    timing.write_text(f"{seconds}\n")
    return out, seconds, _size(out)


def subset_manifest(workdir: Path, per_class: int) -> Path:
    """A manifest of the first ``per_class`` images per class and split (a quick rehearsal)."""
    path = workdir / "subset.csv"
    if not path.exists():
        src = ROOT / "diffprobe/assets/fmnist"
        rows = ["path,label,split,id"]
        for split in ("train", "val"):
            for cls in sorted(p for p in (src / split).iterdir() if p.is_dir()):
                for f in sorted(cls.glob("*.png"))[: per_class if split == "train" else max(1, per_class // 2)]:
                    rows.append(f"{f},{cls.name},{split},{f.relative_to(src / split).as_posix()}")
        path.write_text("\n".join(rows) + "\n")
    return path


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def probe(store: Path, name: str, key: str, params: dict) -> tuple[float, float]:
    """(val top-1, fit seconds) of one probe trained on every (view, draw) row of the train split."""
    import diffprobe
    from diffprobe.probes.result import ProbeConfig
    from diffprobe.probes.run import run_probe

    with diffprobe.open_store(store) as s:
        r = run_probe(s, ProbeConfig(name, (key,), params))
    return r.metrics["top1"], r.fit_seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workdir", type=Path, default=None, help="Keep the stores here (reused when present).")
    ap.add_argument("--views", default="1,4,8")
    ap.add_argument("--draws", default="1,4")
    ap.add_argument("--attention-epochs", type=int, default=8)
    ap.add_argument("--limit", type=int, default=None, help="Only this many train images per class (a quick rehearsal).")
    args = ap.parse_args()
    import torch

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="augment_views-"))
    workdir.mkdir(parents=True, exist_ok=True)
    linear = {"lr": 0.01, "epochs": 28, "optimizer": "sgd", "batch_size": 128}
    attention = {"dim": 64, "heads": 4, "depth": 2, "optimizer": "adamw", "lr": 1e-3, "batch_size": 32,
                 "epochs": args.attention_epochs, "device": "cpu"}  # fmt: skip
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; stores in {workdir}", flush=True)  # fmt: skip
    lin_key, att_key = f"t{T:04d}_b{BLOCK:02d}_p1", f"t{T:04d}_b{BLOCK:02d}_full"
    base_store = extract(workdir, 1, 1, args.limit)[0]
    control: dict[int, tuple[float, float]] = {}
    rows = []
    for k in map(int, args.draws.split(",")):
        for v in map(int, args.views.split(",")):
            store, seconds, size = extract(workdir, v, k, args.limit)
            lin = probe(store, "linear", lin_key, linear)
            att = probe(store, "attention", att_key, attention)
            if v * k not in control:  # same steps on the one-view, one-draw store
                control[v * k] = (
                    lin[0] if v * k == 1 else probe(base_store, "linear", lin_key, {**linear, "epochs": linear["epochs"] * v * k})[0],
                    att[0] if v * k == 1 else probe(base_store, "attention", att_key, {**attention, "epochs": attention["epochs"] * v * k})[0],
                )
            rows.append((v, k, seconds, size, lin, att, control[v * k]))
            print(f"V={v} K={k}: extract {seconds:.0f} s, linear {lin[0]:.1%} ({lin[1]:.0f} s), attention {att[0]:.1%} ({att[1]:.0f} s); "
                  f"same steps without views or draws: {control[v * k][0]:.1%}, {control[v * k][1]:.1%}", flush=True)  # fmt: skip
    base = next((r[2] for r in rows if r[0] == 1 and r[1] == 1), rows[0][2])
    print(f"\nload average {os.getloadavg()[0]:.2f}")
    print("| views V | draws K | forwards / image | extraction | × V=1, K=1 | store | linear top-1 (fit) | same steps, V=K=1 "
          "| attention top-1 (fit) | same steps, V=K=1 |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|")
    for v, k, seconds, size, lin, att, ctl in rows:
        print(f"| {v} | {k} | {v * k} | {seconds:.0f} s | {seconds / base:.1f} | {size / 2**20:.1f} MiB | "
              f"{lin[0]:.1%} ({lin[1]:.0f} s) | {ctl[0]:.1%} | {att[0]:.1%} ({att[1]:.0f} s) | {ctl[1]:.1%} |")  # fmt: skip


if __name__ == "__main__":
    main()
