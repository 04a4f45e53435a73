"""Extraction speed: the reference code's style vs diffprobe's path, on one device, in one run.

(a) reference style: the whole U-Net in fp16 weights (fp32 on CPU, which has no fast fp16 conv),
    run to the end, the block taken by a forward hook, then pooled;
(b) diffprobe: q_sample with the item's deterministic noise, made ahead as the extraction's loader
    workers make it (precomputed here, outside the timed loop, and passed in as the pipeline passes
    it), forward stopped after the block under autocast (bf16 on GPU), pooling on the device,
    features copied to the host — the extraction loop's own FeatureComputer; optionally through
    torch.compile, and with --levers the forward's further levers added one at a time on top of
    it: CUDA graphs, channels-last, the fused Triton GroupNorm+SiLU kernel (the last needs CUDA),
    and on a GPU the eager forward in exact fp32 (what deterministic fp32 costs against bf16);
(c) with --fuse F: T timesteps (--timesteps, default 4) as T separate forwards vs F (t) passes
    stacked into each forward, in (image, t) pairs per second — where fusing pays;
(d) with --e2e: the whole `diffprobe.extract_features` (decode PNGs, compute, write a Zarr store) for p=2
    features and for the block's native map, with the fastest of (b)'s settings, against that
    setting's compute-only rate.

--json FILE appends the figures as one line (see results.py).

Utilisation = GFLOP per image (torch's FlopCounterMode) × img/s, against a dense matmul measured in
the same run (bf16 on GPU, fp32 on CPU). Random weights by default; a small model on CPU.

    python benchmarks/extract_speed.py                       # CPU: adm-32-fmnist, block 13
    python benchmarks/extract_speed.py --model adm-256-uncond --block 24 --batch 128 --compile --levers --e2e   # GPU
    python benchmarks/extract_speed.py --model adm-32-fmnist --batch 64 --fuse 4 --timesteps 8      # fusion
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

import diffprobe
from diffprobe.device import resolve_device, resolve_precision
from diffprobe.extract.compute import FeatureComputer
from diffprobe.extract.compute_spec import ComputeSpec, default_fuse
from diffprobe.store.layout import FeatureKey

from results import Row, append
from timing import median_seconds
from workload import device_label, random_model


def matmul_tflops(device: torch.device) -> float:
    n = 8192 if device.type == "cuda" else 1024
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    s = median_seconds(lambda: a @ b, device, 10, warmup=2)
    return 2 * n**3 / s / 1e12


def gflop_per_image(bb: diffprobe.Backbone, block: int | None, device: torch.device) -> float:
    x = torch.zeros(2, 3, bb.image_size, bb.image_size, device=device)
    with FlopCounterMode(display=False) as fc, torch.inference_mode():
        bb(x, 90) if block is None else bb.features(x, 90, [block])
    return fc.get_total_flops() / 2 / 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="preset (default: adm-256-uncond on GPU, adm-32-fmnist on CPU)")
    ap.add_argument("--block", type=int, default=None, help="block (default 24 for 37-block models, else the middle + 3)")
    ap.add_argument("--batch", type=int, default=None, help="images per forward (default 64 on GPU, 16 on CPU)")
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--compile", action="store_true", help="also time diffprobe's path through torch.compile")
    ap.add_argument("--levers", action="store_true",
                    help="with --compile: add CUDA graphs, channels-last and the Triton norm kernel one at a time; "
                         "also time exact fp32 where the default precision is another")
    ap.add_argument("--fuse", default=None, help="also time T timesteps unfused vs F passes per forward (an int, or auto)")
    ap.add_argument("--timesteps", type=int, default=4, help="timesteps T for --fuse")
    ap.add_argument("--e2e", action="store_true", help="also time the whole extraction (decode, compute, write)")
    ap.add_argument("--e2e-images", type=int, default=None)
    ap.add_argument("--json", default=None, help="append the figures to this file as one JSON line")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)

    device = resolve_device(args.device)
    gpu = device.type == "cuda"
    batch = args.batch or (64 if gpu else 16)
    model, bb, block = random_model(args.model, args.block, device)
    info = bb.block(block)
    name = device_label(device)
    print(f"device: {name}; model {model} (random weights), block {block} ({info.channels}×{info.height}×{info.width}), batch {batch}")

    x0 = torch.rand(batch, 3, bb.image_size, bb.image_size, device=device) * 2 - 1
    ids = [str(i) for i in range(batch)]

    # (a) the reference style
    ref_dtype = torch.float16 if gpu else torch.float32
    ref_net = diffprobe.load_backbone(model, random_weights=True, device=device, dtype=ref_dtype)
    ref_net.load_state_dict(bb.state_dict())
    grabbed: dict[str, torch.Tensor] = {}
    module = dict(ref_net.net.named_modules())[info.path]
    module.register_forward_hook(lambda m, a, o: grabbed.__setitem__("f", o))
    eps = torch.randn_like(x0)

    def reference() -> None:
        with torch.no_grad():
            x_t = diffprobe.q_sample(x0, 90, eps, bb.schedule).to(ref_dtype)
            ref_net(x_t, 90)
            F.adaptive_avg_pool2d(grabbed["f"].float(), 2).cpu()

    precision = resolve_precision("auto", device)
    rows = []
    s_ref = median_seconds(reference, device, args.iters, warmup=2)
    rows.append(("reference: fp16 weights, full forward, hook" if gpu else "reference: fp32, full forward, hook", s_ref))
    key = [FeatureKey(90, block, 2)]
    # The pipeline's noise path: generated by the loader workers, handed to the computer on the
    # device; generating it per item inside the timed loop would time the CPU, not the forward.
    noise = {(0, 90, 0): diffprobe.noise_like(x0, ids, 90, seed=0)}
    base = ComputeSpec(0, 1, "mean", precision, "float16", batch)
    first = f"diffprobe: early exit, {precision}, pooled on device"
    specs = [(first, first, base)]  # (printed label, full name, spec)
    if args.levers and precision != "fp32":  # what exact, reproducible fp32 costs against the default
        exact = "diffprobe: early exit, fp32 (no TF32, deterministic cuDNN)"
        specs.append((exact, exact, replace(base, precision="fp32")))
    if args.compile:
        full = f"diffprobe: early exit, {precision}, torch.compile"
        specs.append((full, full, replace(base, compile=True)))
    if args.compile and args.levers:  # added one at a time: each row has the levers of the rows above it
        levers = [("CUDA graphs", {"cuda_graphs": True}), ("channels-last", {"channels_last": True}),
                  ("Triton GroupNorm+SiLU", {"norm_kernel": "triton"})]  # fmt: skip
        _, full, spec = specs[-1]
        for label, change in levers:
            full, spec = f"{full} + {label}", replace(spec, **change)
            specs.append((f"  + {label}", full, spec))
    timings, names = [], {}
    for label, full, spec in specs:
        names[label] = full
        if (spec.cuda_graphs or spec.norm_kernel == "triton") and not gpu:
            print(f"{label.strip()}: needs CUDA (CUDA graphs; the Triton kernel runs only interpreted on a CPU); not timed")
            continue
        c = FeatureComputer(bb, device, spec)
        s = median_seconds(lambda c=c: c.compute(x0, ids, key, noise), device, args.iters, warmup=3 if spec.compile else 2)
        rows.append((label, s))
        timings.append((s, label, spec))
    FeatureComputer(bb, device, base)  # the backbone back in its default layout and norm kernel

    gf_block = gflop_per_image(bb, block, device)
    gf_full = gflop_per_image(bb, None, device)
    peak = matmul_tflops(device)
    print(f"GFLOP/image: {gf_block:.1f} to block {block}, {gf_full:.1f} full forward; dense matmul: {peak:.1f} TFLOP/s")
    print(f"{'path':<52} {'img/s':>9} {'× ref':>7} {'TFLOP/s':>8} {'util':>6}")
    out = []
    for label, s in rows:
        ips = batch / s
        gf = gf_full if label.startswith("reference") else gf_block
        tf = gf * ips / 1e3
        print(f"{label:<52} {ips:>9.1f} {s_ref / s:>7.2f} {tf:>8.2f} {tf / peak:>6.1%}")
        out.append(Row(f"{model} b{block}: {names.get(label, label)}", ips, "img/s", f"{s_ref / s:.2f}× ref, util {tf / peak:.1%}"))
    best, best_label, best_spec = min(timings, key=lambda r: r[0])
    best_label = names[best_label]
    meta = dict(device=name, model=model, block=block, batch=batch)
    append(args.json, "extract_speed", out, **meta)  # now: a run stopped during the end-to-end part keeps these

    if args.fuse:
        fused(bb, block, batch, device, precision, args, x0, ids)

    if args.e2e:
        n = args.e2e_images or (4 if gpu else 1) * 256
        print(f"end to end with the fastest setting ({best_label}):")
        e2e(bb, model, block, batch, device, batch / best, s_ref, n, best_spec, lambda row: append(args.json, "extract_speed", [row], **meta))


def fused(bb: diffprobe.Backbone, block: int, batch: int, device: torch.device, precision: str, args, x0, ids) -> None:
    """T timesteps per image: one forward per t vs F passes stacked per forward."""
    T = args.timesteps
    f = default_fuse(T, batch, bb.image_size, device) if args.fuse == "auto" else int(args.fuse)
    step = max(1, (bb.schedule.steps - 1) // (T + 1))
    keys = [FeatureKey(step * (i + 1), block, 2) for i in range(T)]
    noise = {(0, k.t, 0): diffprobe.noise_like(x0, ids, k.t, seed=0) for k in keys}  # made ahead, as the loader does
    print(f"{T} timesteps per image, block {block}, p=2 (fuse {args.fuse} → {f}):")
    base = None
    for fuse in dict.fromkeys((1, f)):
        c = FeatureComputer(bb, device, ComputeSpec(0, 1, "mean", precision, "float16", batch, compile=args.compile, fuse=fuse))
        s = median_seconds(lambda: c.compute(x0, ids, keys, noise), device, args.iters, warmup=3 if args.compile else 2)
        base = base or s
        print(f"  fuse {fuse:<3} ({fuse * batch:>5} rows per forward) {batch * T / s:9.1f} (image, t)/s  {base / s:5.2f}×")


def e2e(bb: diffprobe.Backbone, model: str, block: int, batch: int, device: torch.device, compute_ips: float, s_ref: float,
        n: int, spec: ComputeSpec, record: Callable[[Row], None]) -> None:  # fmt: skip
    """The whole pipeline on PNG files: decoding, compute, background writes.

    The steady rate runs from the first finished forward batch to the last write, so it leaves out
    loading the model, creating the store and compiling; units of 512 images let writes overlap.
    """
    from PIL import Image

    info = bb.block(block)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "imgs" / "c0"
        root.mkdir(parents=True)
        rng = np.random.default_rng(0)
        unique = min(n, 256)  # decoding costs the same for copies; writing 8k PNGs would not
        s = bb.image_size
        ramp = np.add.outer(np.arange(s), np.arange(s))[..., None] * np.array([1, 2, 3])
        for i in range(unique):
            img = (ramp * (i % 7 + 1) // 4 + rng.integers(0, 48, (s, s, 3))) % 256
            Image.fromarray(img.astype(np.uint8)).save(root / f"{i:06d}.png")
        for i in range(unique, n):
            os.link(root / f"{i % unique:06d}.png", root / f"{i:06d}.png")
        ckpt = Path(tmp) / "w.pt"
        torch.save(bb.net.state_dict(), ckpt)  # the same random weights, as a checkpoint file
        print(f"end to end ({n} PNG images, {device.type}, units of 512):")
        for label, pool in (("p=2 pooled", 2), (f"{info.height}×{info.width} native map", None)):
            cfg = diffprobe.ExtractConfig(
                data=str(root.parent), out=str(Path(tmp) / f"s{pool}.zarr"), model=model, checkpoint=str(ckpt),
                timesteps=(90,), blocks=(block,), pools=(pool,), batch_size=batch, forward_batch=batch,
                device=str(device), compile=spec.compile, cuda_graphs=spec.cuda_graphs, channels_last=spec.channels_last,
                norm_kernel=spec.norm_kernel, unit_size=512,
            )  # fmt: skip
            r = diffprobe.extract_features(cfg, progress=False)
            steady = r.steady_items_per_second or 0.0
            print(
                f"  {label:<24} steady {steady:9.1f} img/s = {steady / compute_ips:6.1%} of compute-only; "
                f"overall {r.items / r.seconds:7.1f} img/s (model load, store, compile included); "
                f"wrote {r.bytes_written / 1e6:.1f} MB"
            )
            record(Row(f"{model} b{block}: end to end, {label}", steady, "img/s",
                       f"{steady * s_ref / batch:.2f}× ref, {steady / compute_ips:.1%} of compute-only, {r.bytes_written / 1e6:.0f} MB"))  # fmt: skip


if __name__ == "__main__":
    main()
