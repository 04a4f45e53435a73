"""Where the forward's time goes: a torch.profiler table of extraction's per-batch computation, by kernel group.

Profiles exactly what extraction runs per forward batch — ``FeatureComputer.compute`` (q_sample
with precomputed noise, the U-Net stopped after the block under autocast, pooling on the device,
the copy to the host) — optionally through torch.compile, after a warm-up that compiles it. Each
kernel (GPU: the device kernels' self device time; CPU: the ops' self CPU time, and with --compile
inductor's C++ kernels) is put into one group by the first matching rule of
:data:`RULES`, an ordered table of (group, regex):

    convolution · matmul/attention · norm+activation · elementwise · copies/layout · pooling/reduction · other

One row per group: ms per batch, share of the profiled kernel time, kernels launched per batch,
the top 3 kernels. Then the profiled kernel time against the (unprofiled) wall time per batch —
the gap is launch overhead, host work and idle device — and the top kernels of "other", so a
misclassified kernel shows. Random weights; a small model on CPU (a rehearsal of the GPU run).

    python benchmarks/gpu_profile.py                     # CPU: adm-32-fmnist, block 13, batch 16
    python benchmarks/gpu_profile.py --compile --trace /tmp/profile.json.gz   # GPU: adm-256-uncond, block 24, batch 128, bf16
"""

from __future__ import annotations

import argparse
import logging
import re
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

import diffprobe
from diffprobe.device import resolve_device, resolve_precision
from diffprobe.extract.compute import FeatureComputer
from diffprobe.extract.compute_spec import ComputeSpec
from diffprobe.store.layout import FeatureKey

from results import Row, append
from timing import median_seconds, sync
from workload import device_label, random_model

#: An inductor-generated kernel (triton_poi_/triton_red_/triton_per_ on GPU, [graph_N_]cpp_ on CPU),
#: named after the ops it fuses.
INDUCTOR = r"^(graph_\d+_)?(triton_[a-z]+|cpp)_fused"
#: (group, regex) rules, first match wins (case-insensitive ``re.search`` on the kernel or op name;
#: words after ``aten::`` are op names, which match in full).
#: Order matters: attention before convolution (cuDNN's SDPA kernels contain "cudnn"); norm and
#: activation before copies (inductor names fused kernels after all their ops, "_to_copy" included);
#: inductor's kernels before the generic names, since a fused kernel named after "convolution" is
#: the bias add or the layout change around an extern conv, not a conv.
# fmt: off
RULES: tuple[tuple[str, str], ...] = (
    ("matmul/attention", r"sdpa|flash|fmha|attention|softmax"),
    # diffprobe's Triton GroupNorm op: its kernels by name, and the custom op itself (CPU-side event)
    ("norm+activation", r"group_?norm|layer_?norm|batch_?norm|silu|gelu|RowwiseMoments|ComputeFusedParams|ComputeMeanRstd"
                        r"|^(partial_stats|group_stats|normalize)$"),
    ("copies/layout", INDUCTOR + r"(_+(to_copy|clone|cat|permute|transpose|view|unsafe_view|constant_pad_nd))+_\d+"),
    ("pooling/reduction", r"^triton_(red|per)_"),
    ("elementwise", INDUCTOR),  # pointwise; "convolution" in such a name is the bias add or layout change around an extern conv
    ("copies/layout", r"nchwToNhwc|nhwcToNchw|memcpy|memset"),
    ("convolution", r"conv|fprop|dgrad|wgrad|implicit_gemm|implicit_precomp|winograd|cudnn"),
    ("matmul/attention", r"gemm|gemv|\b(mm|bmm|addmm|baddbmm|matmul|linear)\b|nvjet|cublas|cutlass"),
    ("copies/layout", r"copy|CatArray|contiguous|transpose|permute|aten::(clone|cat|to|as_strided_?|empty\w*|resize_|\w*view|reshape|"
                      r"_reshape_alias|expand|\w*squeeze|slice|narrow|split\w*|chunk|select|detach_?|alias|resolve_\w+|t|flatten|lift_fresh|repeat\w*)$"),
    ("pooling/reduction", r"pool|reduce|reduction|aten::(mean|sum|amax|amin|max|min|var_mean|all|any)$"),
    ("elementwise", r"elementwise|upsample|aten::(add|r?sub|mul|div|neg|exp|sin|cos|sqrt|rsqrt|pow|where|clamp|lerp|fill|zero|arange|"
                    r"scalar_tensor|dropout|is(neg|pos)?(inf|nan)|index)_?$"),
)
#: The table's rows, in print order ("other": what no rule matched).
GROUPS: tuple[str, ...] = ("convolution", "matmul/attention", "norm+activation", "elementwise", "copies/layout", "pooling/reduction", "other")
# fmt: on
assert {g for g, _ in RULES} < set(GROUPS)
#: Profiler ranges that wrap ops rather than compute (their self time is host overhead: the gap).
WRAPPERS = re.compile(r"^(## |Torch-Compiled Region|TorchDynamo|CompiledFunction|ProfilerStep|Pregraph bytecode|AOTDispatcher)")
_COMPILED = tuple((g, re.compile(rx, re.IGNORECASE)) for g, rx in RULES)


def classify(name: str) -> str:
    """The group of a kernel or op ``name``: the first rule of :data:`RULES` that matches, else "other"."""
    for group, rx in _COMPILED:
        if rx.search(name):
            return group
    return "other"


@dataclass
class Group:
    """Kernel time of one group over the profiled iterations (µs), and per kernel name."""

    us: float = 0.0
    launches: int = 0
    by_name: dict[str, float] = field(default_factory=lambda: defaultdict(float))

    def top(self, k: int) -> list[tuple[str, float]]:
        """The ``k`` kernel names with the most time, as (name, µs)."""
        return sorted(self.by_name.items(), key=lambda kv: -kv[1])[:k]


def kernel_times(events: Iterable, cuda: bool) -> Iterable[tuple[str, float]]:
    """(name, µs) of every kernel in a profile: device kernels (and memcpy/memset) with their self
    device time on CUDA; on CPU every op with its self CPU time (the time outside its child ops:
    a conv's compute sits in aten::mkldnn_convolution, whose allocations are child ops, so leaf ops
    alone would miss it), inductor's C++ kernels included, the wrapping ranges left out."""
    for e in events:
        if cuda:
            if e.device_type == DeviceType.CUDA:
                yield e.name, e.device_time_total
        elif e.device_type == DeviceType.CPU and not e.is_async and not WRAPPERS.match(e.name):
            yield e.name, e.self_cpu_time_total


def group_kernels(times: Iterable[tuple[str, float]]) -> dict[str, Group]:
    """{group: its kernels' time, launches and per-name time} for (name, µs) pairs, every group present."""
    groups = {g: Group() for g in GROUPS}
    for name, us in times:
        g = groups[classify(name)]
        g.us += us
        g.launches += 1
        g.by_name[name] += us
    return groups


def short(name: str, width: int) -> str:
    """``name`` cut in the middle to ``width`` characters (CUDA kernel names run to hundreds)."""
    name = " ".join(name.split())
    return name if len(name) <= width else name[: width // 2 - 1] + "…" + name[-(width - width // 2) :]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="preset (default: adm-256-uncond on GPU, adm-32-fmnist on CPU)")
    ap.add_argument("--block", type=int, default=None, help="block (default 24 for 37-block models, else the middle + 3)")
    ap.add_argument("--batch", type=int, default=None, help="images per forward (default 128 on GPU, 16 on CPU)")
    ap.add_argument("--compile", action="store_true", help="profile the forward through torch.compile (falls back to eager, logged)")
    ap.add_argument("--precision", default="auto", help="auto (bf16 on GPU, fp32 on CPU), fp32, bf16, fp16")
    ap.add_argument("--iters", type=int, default=5, help="timed iterations, then as many profiled ones")
    ap.add_argument("--warmup", type=int, default=None, help="warm-up iterations (default 3 with --compile, else 1)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--channels-last", action="store_true", help="weights and activations channels-last")
    ap.add_argument("--norm-kernel", default="torch", choices=("torch", "triton", "auto"),
                    help="GroupNorm+SiLU kernel (auto: triton on CUDA, torch elsewhere)")
    ap.add_argument("--trace", default=None, help="also write a Chrome trace of the profiled iterations here (.json or .json.gz)")
    ap.add_argument("--json", default=None, help="append the figures (ms per batch by group) to this file as one JSON line")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)

    device = resolve_device(args.device)
    gpu = device.type == "cuda"
    batch = args.batch or (128 if gpu else 16)
    precision = resolve_precision(args.precision, device)
    model, bb, block = random_model(args.model, args.block, device)
    info = bb.block(block)
    if args.compile and not gpu:
        import torch._inductor.config as inductor_config

        inductor_config.cpp.enable_kernel_profile = True  # inductor's C++ kernels as profiler events (else invisible)

    x0 = torch.rand(batch, 3, bb.image_size, bb.image_size, device=device) * 2 - 1
    ids = [str(i) for i in range(batch)]
    t = 90
    keys = [FeatureKey(t, block, 2)]
    noise = {(0, t, 0): diffprobe.noise_like(x0, ids, t, seed=0)}  # made ahead, as extraction's loader makes it
    norm = ("triton" if gpu else "torch") if args.norm_kernel == "auto" else args.norm_kernel
    spec = ComputeSpec(0, 1, "mean", precision, "float16", batch, compile=args.compile, channels_last=args.channels_last, norm_kernel=norm)
    computer = FeatureComputer(bb, device, spec)

    def step() -> None:
        computer.compute(x0, ids, keys, noise)

    for _ in range(args.warmup if args.warmup is not None else (3 if args.compile else 1)):
        step()
    compiled = "compiled" if computer.provenance.get("compiled") else ("eager (compile fell back)" if args.compile else "eager")
    wall = median_seconds(step, device, args.iters)

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if gpu else [])
    with profile(activities=activities) as prof:
        sync(device)
        t0 = time.perf_counter()
        for _ in range(args.iters):
            step()
        sync(device)
        profiled_wall = (time.perf_counter() - t0) / args.iters
    if args.trace:
        prof.export_chrome_trace(args.trace)
    events = prof.events()
    on_device = gpu and any(e.device_type == DeviceType.CUDA for e in events)
    if gpu and not on_device:
        logging.warning("the profiler recorded no CUDA kernels (no CUPTI?): grouping the ops' self CPU time instead")
    groups = group_kernels(kernel_times(events, on_device))
    total_us = sum(g.us for g in groups.values())
    n = args.iters

    name = device_label(device)
    print(f"device: {name}; model {model} (random weights), block {block} ({info.channels}×{info.height}×{info.width}), "
          f"batch {batch}, {precision}, {compiled}, {'channels-last' if args.channels_last else 'NCHW'}, norm kernel {norm}")  # fmt: skip
    print(f"wall: {wall * 1e3:.2f} ms per batch (median of {n}), {batch / wall:.1f} img/s")
    what = "device kernels, self device time" if on_device else "ops, self CPU time"
    print(f"profiled {n} iterations ({what}); per batch:")
    print(f"{'group':<18} {'ms':>9} {'share':>7} {'kernels':>8}  top kernels (ms)")
    for g in GROUPS:
        grp = groups[g]
        tops = "; ".join(f"{short(k, 48)} ({us / n / 1e3:.2f})" for k, us in grp.top(3))
        share = grp.us / total_us if total_us else 0.0
        print(f"{g:<18} {grp.us / n / 1e3:>9.2f} {share:>7.1%} {grp.launches / n:>8.0f}  {tops}")
    kern = total_us / n / 1e3
    print(f"{'total':<18} {kern:>9.2f} {1 if total_us else 0:>7.1%} {sum(g.launches for g in groups.values()) / n:>8.0f}")
    pw = profiled_wall * 1e3
    print(f"kernel time {kern:.2f} ms of {pw:.2f} ms wall per profiled batch ({kern / pw:.1%} busy); "
          f"gap {pw - kern:.2f} ms = launch overhead, host work, idle (unprofiled wall {wall * 1e3:.2f} ms)")  # fmt: skip
    others = groups["other"].top(8)
    if others:
        print("top kernels in other (check the rules if one belongs elsewhere):")
        for k, us in others:
            print(f"  {us / n / 1e3:9.3f} ms  {short(k, 120)}")
    if args.trace:
        print(f"Chrome trace: {args.trace}")
    out = [Row(f"profile: wall per batch ({compiled})", wall * 1e3, "ms", f"{batch / wall:.1f} img/s")]
    out += [Row(f"profile: {g}", groups[g].us / n / 1e3, "ms", f"{groups[g].us / total_us:.1%} of kernel time" if total_us else "")
            for g in GROUPS]  # fmt: skip
    out.append(Row("profile: kernel time / wall", kern / pw if pw else None, "share", f"gap {pw - kern:.2f} ms per batch"))
    append(args.json, "gpu_profile", out, device=name, model=model, block=block, batch=batch, precision=precision)


if __name__ == "__main__":
    main()
