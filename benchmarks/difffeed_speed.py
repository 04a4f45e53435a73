"""Time per DifFeed training step: diffprobe's against the released code's style, in one run.

Rows (the same images, feedback nets, head, optimiser step and batch in every row):
  released style   pass 1 through the whole U-Net (no gradient), pass 2 through the whole U-Net
                   with the feedback added, the read block taken on the way;
  online pass 1    pass 1 stopped after the deepest feedback block, pass 2 stopped after the read block;
  cached pass 1    pass 1 read from a cache (host memory, as from a store; copied to the device each
                   step), pass 2 stopped after the read block — what ``--store`` gives.

Random weights; the bundled 32×32 architecture on CPU, the paper's 256 model on GPU. Prints ms per
step, images/s and the ratio to the released style. Examples::

    python benchmarks/difffeed_speed.py                                   # CPU, adm-32-fmnist, batch 4
    python benchmarks/difffeed_speed.py --model adm-256-uncond --batch 32 # GPU
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

import diffprobe
from diffprobe.device import autocast, resolve_device, resolve_precision
from diffprobe.extract.adm.feedback import plan_feedback
from diffprobe.probes.feedback import DifFeedHead

from workload import default_model, device_label


def timed(step: Callable[[], None], device: torch.device, iters: int) -> float:
    """Median seconds of ``step`` over ``iters`` runs, after one warm-up."""
    step()
    times = []
    for _ in range(iters):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="preset (default: adm-256-uncond on GPU, adm-32-fmnist on CPU)")
    ap.add_argument("--batch", type=int, default=4, help="images per step (the paper's 4 per GPU)")
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--dim", type=int, default=None, help="attention-head width (default 1024 on GPU, 64 on CPU)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)

    device = resolve_device(args.device)
    gpu = device.type == "cuda"
    model = args.model or default_model(device)
    bb = diffprobe.load_backbone(model, random_weights=True, device=device)
    mid = next(b.number for b in bb.blocks if b.stage == "middle")
    read = mid + 5
    fb = plan_feedback(bb.blocks, bb.config.num_res_blocks, None, read)
    info = bb.blocks[read - 1]
    dim = args.dim or (1024 if gpu else 64)
    head = DifFeedHead(fb, read, (info.channels, info.height, info.width), 1000, dim, 8 if gpu else 4, 2, 4.0, 16).to(device)
    opt = torch.optim.SGD(head.parameters(), lr=1e-2)
    precision = resolve_precision("auto", device)
    b, t = args.batch, 150
    x_t = torch.randn(b, 3, bb.image_size, bb.image_size, device=device)
    y = torch.randint(0, 1000, (b,), device=device)
    with torch.no_grad(), autocast(precision, device):
        cache = {k: v.float().cpu() for k, v in bb.run_blocks(x_t, t, fb.sources).items()}
    if gpu:
        cache = {k: v.pin_memory() for k, v in cache.items()}
    tt = torch.full((b,), t, device=device)
    name = device_label(device)
    print(f"device: {name}; model {model} (random weights), read block {read}, feedback {list(fb.pairs)}, batch {b}, {precision}")

    def step(pass1: Callable[[], dict[int, torch.Tensor]], full: bool) -> None:
        feats = pass1()
        with autocast(precision, device):
            if full:  # the released style: the whole U-Net, the read block taken on the way
                _, got = bb.net.run(x_t, tt, capture=[read], add=head.feedback(feats))
                logits = head.head(got[read])
            else:
                logits = head(bb, x_t, t, feats)
        loss = F.cross_entropy(logits.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def full_pass1() -> dict[int, torch.Tensor]:
        with torch.no_grad(), autocast(precision, device):
            _, got = bb.net.run(x_t, tt, capture=fb.sources)
        return got

    def online_pass1() -> dict[int, torch.Tensor]:
        with torch.no_grad(), autocast(precision, device):
            return bb.run_blocks(x_t, t, fb.sources)

    def cached_pass1() -> dict[int, torch.Tensor]:
        return {k: v.to(device, non_blocking=True) for k, v in cache.items()}

    rows = [("released style (two full forwards)", full_pass1, True), ("online pass 1, truncated pass 2", online_pass1, False),
            ("cached pass 1, truncated pass 2", cached_pass1, False)]  # fmt: skip
    base = None
    print(f"{'path':<38} {'ms/step':>9} {'img/s':>8} {'× released':>11}")
    for label, pass1, full in rows:
        s = timed(lambda: step(pass1, full), device, args.iters)
        base = base or s
        print(f"{label:<38} {1000 * s:>9.1f} {b / s:>8.1f} {base / s:>10.2f}×")


if __name__ == "__main__":
    main()
