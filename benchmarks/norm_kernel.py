"""GroupNorm → ·(1 + scale) + shift → SiLU alone, three ways: torch eager, torch.compile, Triton.

The op is :func:`diffprobe.extract.adm.kernels.group_norm_act`: "eager" is its torch kernel (the
reference: the ops ADM's modules run, each rounding to the input dtype), "compile" is that same
function through ``torch.compile`` (inductor's own fusion), "triton" its fused Triton kernels (one
statistics pass, one normalise pass that writes the output once). Each row gives ms per call (the
median of --iters after --warmup), effective GB/s — the bytes the op must move, x read once and
the output written once, over the time — the speedup over eager, and the largest difference from
eager's output (fused kernels round once, at the end, so bf16 differs by an output ulp or so).

Shapes: one per resolution of adm-256-uncond (num_channels 256, channel_mult 1,1,2,2,4,4): its
ResBlocks' GroupNorm inputs of 256 channels at 256² and 128², 512 at 64² and 32², 1024 at 16² and
8², all of which the forward up to block 24 (an output block at 16²) runs through, at --batch 128
in bf16 — a representative list, computed from the config rather than measured: the output blocks'
first norms also see the concatenated skip (up to 2048 channels). The variant with the per-item
scale-shift (out_layers), or --variant silu (in_layers) or norm (attention, no activation).

    python benchmarks/norm_kernel.py                              # GPU: batch 128, bf16, NCHW
    python benchmarks/norm_kernel.py --channels-last --json results.jsonl
    python benchmarks/norm_kernel.py --device cpu --small         # rehearsal: small shapes, torch paths only
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import logging
from collections.abc import Callable

import torch

from diffprobe.device import resolve_device
from diffprobe.extract.adm.kernels import group_norm_act

from results import Row, append
from timing import median_seconds
from workload import device_label

#: (channels, side) of the ResBlock GroupNorm inputs of adm-256-uncond (module docstring).
SHAPES = ((256, 256), (256, 128), (512, 64), (512, 32), (1024, 16), (1024, 8))
#: --small: a CPU rehearsal's shapes and batch.
SMALL_SHAPES = ((64, 16), (128, 8))
SMALL_BATCH = 2
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
VARIANTS = {"scale-shift": "GroupNorm(32) → ·(1 + scale) + shift → SiLU", "silu": "GroupNorm(32) → SiLU", "norm": "GroupNorm(32)"}
PATHS = ("eager", "compile", "triton")


def triton_unavailable(device: torch.device) -> str | None:
    """Why the triton row cannot run here, or None."""
    if device.type != "cuda":
        return "needs CUDA (on CPU Triton only interprets: this is a rehearsal)"
    if importlib.util.find_spec("triton") is None:
        return "triton is not installed"
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--dtype", default=None, choices=tuple(DTYPES), help="input dtype (default bf16 on GPU, fp32 on CPU)")
    ap.add_argument("--batch", type=int, default=None, help=f"items per call (default 128; {SMALL_BATCH} with --small)")
    ap.add_argument("--small", action="store_true", help=f"small shapes {SMALL_SHAPES} (a CPU rehearsal)")
    ap.add_argument("--channels-last", action="store_true", help="inputs channels-last (NHWC strides)")
    ap.add_argument("--variant", default="scale-shift", choices=tuple(VARIANTS))
    ap.add_argument("--iters", type=int, default=20, help="timed calls per path and shape")
    ap.add_argument("--warmup", type=int, default=3, help="untimed calls first (torch.compile compiles in the first)")
    ap.add_argument("--json", default=None, help="append the figures to this file as one JSON line")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)

    device = resolve_device(args.device)
    dtype = DTYPES[args.dtype or ("bf16" if device.type == "cuda" else "fp32")]
    shapes = SMALL_SHAPES if args.small else SHAPES
    batch = args.batch or (SMALL_BATCH if args.small else 128)
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    no_triton = triton_unavailable(device)
    ss, silu = args.variant == "scale-shift", args.variant != "norm"

    def op(kernel: str) -> Callable[..., torch.Tensor]:
        return functools.partial(group_norm_act, groups=32, eps=1e-5, silu=silu, kernel=kernel)

    calls = {"eager": op("torch"), "compile": torch.compile(op("torch"), dynamic=False), "triton": op("triton")}
    name = device_label(device)
    layout = "channels-last" if args.channels_last else "NCHW"
    print(f"device: {name}; {VARIANTS[args.variant]}; batch {batch}, {str(dtype).removeprefix('torch.')}, {layout}")
    print(f"{'shape (C×H×W)':<16} {'path':<8} {'ms':>9} {'GB/s':>8} {'× eager':>8} {'max|Δ| vs eager':>16}")
    rows: list[Row] = []
    gen = torch.Generator(device=device).manual_seed(0)
    for c, side in shapes:
        shape = f"{c}×{side}×{side}"
        x = torch.randn(batch, c, side, side, generator=gen, device=device, dtype=dtype).to(memory_format=fmt)
        w, b = 1 + 0.1 * torch.randn(c, generator=gen, device=device), 0.1 * torch.randn(c, generator=gen, device=device)
        scale = 0.1 * torch.randn(batch, c, 1, 1, generator=gen, device=device, dtype=dtype) if ss else None
        shift = 0.1 * torch.randn(batch, c, 1, 1, generator=gen, device=device, dtype=dtype) if ss else None
        moved = 2 * x.numel() * x.element_size()  # x read once, the output written once
        ref: torch.Tensor | None = None
        eager_s = None
        for path in PATHS:
            what = f"{args.variant} {shape} {layout} {path}"
            if path == "triton" and no_triton:
                print(f"{shape:<16} {path:<8} {'—':>9}  {no_triton}")
                rows += [Row(what, None, "ms", no_triton), Row(f"{what} speedup", None, "× eager", no_triton)]
                continue
            fn = functools.partial(calls[path], x, w, b, scale=scale, shift=shift)
            try:
                with torch.inference_mode():
                    s = median_seconds(fn, device, args.iters, args.warmup)
                    out = fn()
            except Exception as e:  # a compile failure is a result to report, not a crash of the table
                logging.warning("%s failed for %s: %s", path, shape, e)
                print(f"{shape:<16} {path:<8} {'—':>9}  failed: {type(e).__name__}")
                rows += [Row(what, None, "ms", f"failed: {type(e).__name__}"), Row(f"{what} speedup", None, "× eager", "failed")]
                continue
            if ref is None:
                ref, eager_s = out, s
            diff = (out.float() - ref.float()).abs().max().item()
            speedup = (eager_s or s) / s
            print(f"{shape:<16} {path:<8} {s * 1e3:>9.3f} {moved / s / 1e9:>8.1f} {speedup:>7.2f}× {diff:>16.2e}")
            rows.append(Row(what, s * 1e3, "ms", f"{moved / s / 1e9:.1f} GB/s, max|Δ| vs eager {diff:.2e}"))
            if path != "eager":
                rows.append(Row(f"{what} speedup", speedup, "× eager"))
            del out
        del ref, x
    append(args.json, "norm_kernel", rows, device=name, batch=batch, dtype=str(dtype), layout=layout, variant=args.variant)


if __name__ == "__main__":
    main()
