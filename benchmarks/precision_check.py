"""Numerical check of the fast path: features in bf16/fp16 autocast vs fp32, and what it does to probes.

Extracts the bundled Fashion-MNIST slice (1,000 train, 500 val) with the bundled model at each
precision, prints the relative error of every stored key against fp32 (max |Δ| / max |fp32| and
the median per-item relative L2 error), and the accuracy of a logistic probe and the paper's linear
probe (SGD recipe) trained on each. The issue's bar: accuracy unchanged within 0.5 points.
With --fast, one more row: bf16 with every lever of the forward beyond torch.compile — on CUDA
compiled, CUDA graphs, channels-last and the Triton GroupNorm+SiLU kernel; on a CPU channels-last
alone (the Triton kernel runs only interpreted there).

    python benchmarks/precision_check.py                 # the device's default (CPU here)
    python benchmarks/precision_check.py --device cuda --fast --json results.jsonl   # on a GPU
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

import numpy as np

import diffprobe
from diffprobe.pipelines.demo import DEMO_CHECKPOINT, DEMO_DATA, DEMO_MODEL
from diffprobe.probes import ProbeConfig, run_probe

from results import Row, append
from workload import device_label


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--precisions", default="fp32,bf16,fp16")
    ap.add_argument("--t", type=int, default=150)
    ap.add_argument("--blocks", default="10,13")
    ap.add_argument("--fast", action="store_true", help="add bf16 with the forward's levers (module docstring)")
    ap.add_argument("--json", default=None, help="append the figures to this file as one JSON line")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    from diffprobe.device import resolve_device

    device = resolve_device(args.device)
    name = device_label(device)
    precisions = args.precisions.split(",")
    assert precisions[0] == "fp32", "the first precision is the reference"
    blocks = tuple(int(b) for b in args.blocks.split(","))
    print(f"device: {name}; model {DEMO_MODEL} (bundled checkpoint), t={args.t}, blocks {blocks}, pools 1,2")
    gpu = device.type == "cuda"
    variants = {p: {"precision": p} for p in precisions}
    if args.fast:
        variants["bf16-fast"] = {"precision": "bf16", "compile": gpu, "cuda_graphs": gpu, "channels_last": True,
                                 "norm_kernel": "triton" if gpu else "torch"}  # fmt: skip
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        stores = {}
        for label, settings in variants.items():
            cfg = diffprobe.ExtractConfig(
                data=str(DEMO_DATA), out=str(Path(tmp) / f"{label}.zarr"), model=DEMO_MODEL, checkpoint=str(DEMO_CHECKPOINT),
                timesteps=(args.t,), blocks=blocks, pools=(1, 2), dtype="float32", device=str(device), **settings,
            )  # fmt: skip
            s = diffprobe.extract_features(cfg, progress=False)
            stores[label] = diffprobe.open_store(cfg.out)
            print(f"  extracted {label} ({', '.join(f'{k}={v}' for k, v in settings.items())}): {s.items / s.seconds:.1f} img/s")
        ref = stores["fp32"]
        print(f"{'key':<14} {'precision':<9} {'max rel err':>11} {'median L2 rel':>13} {'logistic':>9} {'Δ':>6} {'linear':>7} {'Δ':>6}")
        for key in ref.keys("val"):
            base = None
            for label, st in stores.items():
                a = ref.read("val", key).astype(np.float64).reshape(500, -1)
                b = st.read("val", key).astype(np.float64).reshape(500, -1)
                max_rel = np.abs(a - b).max() / np.abs(a).max()
                l2 = np.median(np.linalg.norm(a - b, axis=1) / np.linalg.norm(a, axis=1))
                lo = run_probe(st, ProbeConfig("logistic", (key,))).metrics["top1"]
                li = run_probe(st, ProbeConfig("linear", (key,), {"random_state": 0})).metrics["top1"]
                if base is None:
                    base = (lo, li)
                print(f"{key:<14} {label:<9} {max_rel:>11.2e} {l2:>13.2e} {lo:>9.1%} {100 * (lo - base[0]):>+6.1f} {li:>7.1%} {100 * (li - base[1]):>+6.1f}")
                if label != "fp32":
                    rows += [Row(f"precision {label} {key}: max rel err vs fp32", float(max_rel), "ratio", f"median L2 {l2:.1e}"),
                             Row(f"precision {label} {key}: logistic Δ vs fp32", 100 * (lo - base[0]), "points", f"{lo:.1%}"),
                             Row(f"precision {label} {key}: linear Δ vs fp32", 100 * (li - base[1]), "points", f"{li:.1%}")]  # fmt: skip
        for st in stores.values():
            st.close()
    append(args.json, "precision_check", rows, device=name)


if __name__ == "__main__":
    main()
