"""Probes and CKA on a GPU for real, then two scale checks: ImageNet-sized vector features, and the
attention head on native 16×16 maps from a store.

Three stages (``--stages small,scale,attention``, default all; gpu_check.sh runs each as its own
call under ``timeout``). Each has a wall-time budget (--small-budget 40 s, --scale-budget 90 s,
--attn-budget 45 s: what gpu_check.sh allows them), counted from the process start for the first
stage (imports included) and from the end of the one before for the others; its last 10% (at most
5 s) is kept for writing the figures and deleting the stage's store. A step still running when the
budget is spent is stopped (SIGALRM) and reported "over budget" with what it had done by then
(epochs or C values finished, and the fit time they extrapolate to); an error becomes a "failed"
row. Every row is printed as it is measured, and each stage's rows are appended to ``--json FILE``
as soon as the stage ends, before its store is deleted (and on SIGTERM, a caller's ``timeout``).

small      The bundled Fashion-MNIST slice (1,000 train / 500 val; ``--small-per-class`` takes fewer)
           through the bundled adm-32-fmnist checkpoint at t = 90, 150, blocks 10, 12, 15, pools 1 and
           full, extracted on --device; ``cka_blocks`` (linear, biased) at t = 90, pool 1 on the val
           split on --device; then ``run_probe`` with ``device`` = --device for each probe: logistic,
           linear and knn with their defaults on t0090_b12_p1 (and again on the CPU when --device is
           not the CPU, so a broken device path shows as a different top-1; chance is 10%); attention
           on t0090_b12_full and DifFormer on the six native maps with the README's small-data recipe
           (dim 64, 4 heads, depth 2, SGD lr 1e-2, batch 4, 8 epochs), beside the README's CPU top-1.
           (small_stage.py)
scale      Synthetic "pooled" features: --scale-n train items (1,281,167) × --scale-dim (4,096) float16,
           --scale-classes (1,000) classes, val min(50,000, N/10): class means plus unit Gaussian noise
           (two classes lie ~8.5 σ apart), drawn on --device unit by unit and written by extraction's
           own writer (synthetic_store.py), so ``run_probe`` reads a complete store as it reads an
           extracted one. Then the two calls a user makes:
             ``diffprobe probe logistic STORE --device D``: C chosen from the 11 half-decades of
             DEFAULT_CS (1e-4 … 10) on a stratified 20% hold-out of train (warm-started path, stopping
             after 3 Cs without a better hold-out accuracy), then refitted at that C on every train row;
             ``diffprobe probe linear STORE --device D -p lr=0.001,0.003,0.01,0.03``: four heads in one
             pass on 90% of train (SGD, batch 128, 28 epochs, lr × 0.1 every 7), the best lr chosen on
             the other 10%, then retrained on every train row (56 epochs in all).
           Both standardise with train statistics and evaluate on val. With the CLI's --max-memory
           (4GiB; ``--scale-max-memory``) the 21 GB float32 train split is not loaded into host memory:
           it is streamed from the store, or held on the GPU where it fits (see the probes' docs). The
           stage also times one streamed read pass over train, what each L-BFGS evaluation and each
           linear epoch costs when the split is streamed. ``--scale-max-memory 64GiB`` is the in-memory
           run (about 4× the float32 size in host memory at the peak). (scale_stages.py)
attention  --attn-n (50,000) maps of --attn-channels × 16 × 16 (1024: 26 GB of float16) written the
           same way (class means per channel, constant over the map, plus noise), then the default
           attention call: the paper's head (dim 1024, 8 heads, depth 2, SGD lr 5e-2, batch 128),
           standardised with train statistics, for --attn-epochs (1): images/s of training, and load +
           evaluation time. The fit includes the standardisation pass (``Standardizer.fit`` reads
           chunks of at most 256 MB of float64: 128 maps at a time here). Above --max-memory the probe
           does not load the split: it is streamed from the store in chunks of chunk_size = 16,384 rows
           (17 GB as float32), shuffled within a chunk, or held on the GPU where it fits (see the
           probes' docs). (scale_stages.py)

Figures are printed, never asserted. ``--json FILE`` appends one line per stage (results.py):
{"benchmark": "gpu_probes", "device": …, "stage": …, "rows": [{"what", "value", "unit", "note"}, …]}.

On the H200 (``--workdir`` needs ~30 GB free; about 3 minutes with the default budgets):
    python benchmarks/gpu_probes.py --workdir /tmp --json $OUT/benchmarks.jsonl
CPU rehearsal of the same paths (streamed, as at the default sizes; about 70 s on 2 cores):
    python benchmarks/gpu_probes.py --device cpu --small-per-class 10,5 --small-budget 300 --scale-n 20000 --scale-dim 256 \\
        --scale-classes 10 --scale-max-memory 1MB --attn-n 512 --attn-channels 64 --attn-classes 10 --attn-dim 64 \\
        --attn-max-memory 1MB
"""

from __future__ import annotations

import os
import time

#: The first stage's budget counts from here: the process start, imports included.
START = time.perf_counter()
# Idle OpenMP threads that spin cost a shared CPU dearly (the CPU reference fits, a rehearsal);
# passive waiting costs nothing on an idle host.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import logging  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from budget import PROGRESS, Budget, OverBudget, Report, Terminated, free_memory, host_memory, raise_on_sigterm  # noqa: E402
from scale_stages import AttentionConfig, ScaleConfig, attention_stage, scale_stage  # noqa: E402
from small_stage import SmallConfig, small_stage  # noqa: E402

log = logging.getLogger("gpu_probes")
#: Each stage: (its function, its config's type); run in the order given by --stages.
STAGES: dict[str, tuple[Callable[..., None], type]] = {
    "small": (small_stage, SmallConfig),
    "scale": (scale_stage, ScaleConfig),
    "attention": (attention_stage, AttentionConfig),
}


def reserve(budget: float) -> float:
    """Seconds of a stage's budget kept for writing its figures and deleting its store."""
    return min(5.0, 0.1 * budget)


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, dict[str, Any]]:
    """The run's options, and each stage's frozen config built from them."""
    from diffprobe.sizes import parse_size

    def ints(text: str) -> tuple[int, ...]:
        return tuple(int(v) for v in text.split(","))

    def per_class(text: str) -> tuple[int, int]:
        train, val = ints(text)
        return train, val

    sc, at, sm = ScaleConfig, AttentionConfig, SmallConfig
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stages", default=",".join(STAGES), help=f"comma list of {', '.join(STAGES)} [default: all]")
    ap.add_argument("--device", default="auto", help="auto (CUDA when present), cuda, cuda:K or cpu")
    ap.add_argument("--workdir", type=Path, default=None, help="where the stores are written (a temporary folder inside it, deleted after)")
    ap.add_argument("--json", type=Path, default=None, help="append one JSON line per stage with its figures to this file")
    ap.add_argument("--small-budget", type=float, default=sm.budget, help="seconds of wall time [default: %(default)s]")
    ap.add_argument("--small-per-class", type=per_class, default=None, metavar="TRAIN,VAL", help="images per class [default: all]")
    ap.add_argument("--small-t", type=ints, default=sm.timesteps, help="timesteps to extract, with 90 [default: 90,150]")
    ap.add_argument("--head-epochs", type=int, default=None, help="epochs of the small stage's attention/DifFormer heads [default: 8]")
    ap.add_argument("--scale-budget", type=float, default=sc.budget, help="seconds (writing: ≤ 40%%) [default: %(default)s]")
    ap.add_argument("--scale-n", type=int, default=sc.n, help="[default: %(default)s]")
    ap.add_argument("--scale-dim", type=int, default=sc.dim, help="[default: %(default)s]")
    ap.add_argument("--scale-classes", type=int, default=sc.classes, help="[default: %(default)s]")
    ap.add_argument("--scale-max-memory", type=parse_size, default=sc.max_memory,
                    help="the probes' --max-memory: float32 splits larger than this are streamed [default: 4GiB, the CLI's]")  # fmt: skip
    ap.add_argument("--attn-budget", type=float, default=at.budget, help="seconds (writing: ≤ 50%%) [default: %(default)s]")
    ap.add_argument("--attn-n", type=int, default=at.n, help="[default: %(default)s]")
    ap.add_argument("--attn-channels", type=int, default=at.channels, help="[default: %(default)s]")
    ap.add_argument("--attn-size", type=int, default=at.size, help="[default: %(default)s]")
    ap.add_argument("--attn-classes", type=int, default=at.classes, help="[default: %(default)s]")
    ap.add_argument("--attn-epochs", type=int, default=at.epochs, help="[default: %(default)s]")
    ap.add_argument("--attn-dim", type=int, default=None, help="head width [default: the probe's, 1024]")
    ap.add_argument("--attn-max-memory", type=parse_size, default=at.max_memory, help="the probe's --max-memory [default: 4GiB]")
    args = ap.parse_args(argv)
    args.stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = sorted(set(args.stages) - set(STAGES))
    if unknown:
        ap.error(f"unknown stage(s) {', '.join(unknown)}; valid: {', '.join(STAGES)}")
    try:
        small = sm(args.small_budget, args.small_per_class, args.small_t, args.head_epochs)
        scale = sc(args.scale_budget, args.scale_n, args.scale_dim, args.scale_classes, args.scale_max_memory)
        attention = at(args.attn_budget, args.attn_n, args.attn_channels, args.attn_size, args.attn_classes, args.attn_epochs,
                       args.attn_dim, args.attn_max_memory)  # fmt: skip
    except ValueError as e:
        ap.error(str(e))
    return args, {"small": small, "scale": scale, "attention": attention}


def run_stage(name: str, config: Any, dev: Any, report: Report, budget: Budget, work: Path) -> None:
    """One stage in its own folder; its rows are appended to --json before the folder is deleted."""
    fn, _ = STAGES[name]
    print(f"== {name} (budget {config.budget:.0f} s, {budget.left():.0f} s left for measuring)", flush=True)
    t0 = time.perf_counter()
    folder = work / name
    folder.mkdir()
    try:
        fn(config, dev, report, budget, folder)
    except Exception as e:  # a stage's own steps catch their errors; this is the rest of its code
        log.exception("stage %s failed", name)
        report.add(f"{name}: stage", None, "s", f"failed: {type(e).__name__}: {e}")
    except OverBudget:  # an alarm that went off between two steps
        report.add(f"{name}: stage", None, "s", "over budget")
    except Terminated:
        report.add(f"{name}: stage", None, "s", f"stopped by SIGTERM (the caller's timeout) after {time.perf_counter() - t0:.0f} s")
        raise
    finally:
        report.flush(stage=name)
        shutil.rmtree(folder, ignore_errors=True)
        free_memory()
        print(f"   {name} took {time.perf_counter() - t0:.1f} s", flush=True)


def main() -> None:
    args, configs = parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for handler in logging.getLogger().handlers:
        handler.setLevel(logging.INFO)  # the library's debug records go to PROGRESS only
    PROGRESS.attach()
    raise_on_sigterm()

    import torch

    from diffprobe.device import device_name, resolve_device

    dev = resolve_device(args.device)
    name = device_name(dev)
    print(f"device: {name}; torch {torch.__version__}, {os.cpu_count()} CPU cores, {host_memory() / 2**30:.0f} GiB host memory; "
          f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}", flush=True)  # fmt: skip
    report = Report(args.json, "gpu_probes", device=name)
    work = Path(tempfile.mkdtemp(prefix="gpu_probes-", dir=args.workdir))
    start = START
    try:
        for stage in args.stages:
            seconds = configs[stage].budget
            run_stage(stage, configs[stage], dev, report, Budget(seconds, start, reserve(seconds)), work)
            start = time.perf_counter()
    except Terminated:
        sys.exit(128 + signal.SIGTERM)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
