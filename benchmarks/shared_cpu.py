"""A diffprobe command on a shared CPU: its time alone, and under a concurrent CPU load, with the
CLI's thread policy (passive OpenMP waits, a thread per available core) and with OpenMP's spinning
default (``--busy-wait``).

The load is ``--load`` processes that each keep one core busy (a pure-Python loop), started just
before the command and stopped after it. Each configuration runs ``--repeats`` times; the minimum is
shown, with the loaded/unloaded ratio of each policy (the target: the default policy within 1.5×)::

    python benchmarks/shared_cpu.py                         # the extraction arm of the demo, block 1-12 at t=90
    python benchmarks/shared_cpu.py --job demo --policies default --repeats 1   # the whole demo (minutes)
    python benchmarks/shared_cpu.py --per-class 5 --repeats 1   # a smoke run
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from results import Row, append
from workload import slice_manifest

#: variables the thread policy sets: removed from the command's environment so that each run applies its own
_POLICY_VARS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def _burn(stop: mp.Event) -> None:  # type: ignore[valid-type]
    x = 0
    while not stop.is_set():  # type: ignore[attr-defined]
        for _ in range(100_000):
            x += 1


def command(job: str, work: Path, data: Path, busy_wait: bool) -> list[str]:
    """The diffprobe command line of one run (a fresh output every time: nothing is resumed)."""
    out = work / f"run-{time.monotonic_ns()}"
    policy = ["--busy-wait"] if busy_wait else []
    if job == "demo":
        return [sys.executable, "-m", "diffprobe", *policy, "-q", "demo", "--out", str(out), "--no-progress"]
    return [sys.executable, "-m", "diffprobe", *policy, "-q", "extract", str(data), "--model", "adm-32-fmnist", "--t", "90",
            "--blocks", "1-12", "--pools", "1,2", "--out", str(out / "s.zarr"), "--no-progress"]  # fmt: skip


def timed(cmd: list[str], load: int) -> float:
    """Wall seconds of ``cmd`` with ``load`` busy processes running beside it."""
    env = {k: v for k, v in os.environ.items() if k not in _POLICY_VARS}
    stop = mp.Event()
    burners = [mp.Process(target=_burn, args=(stop,), daemon=True) for _ in range(load)]
    for p in burners:
        p.start()
    try:
        t0 = time.perf_counter()
        subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
        return time.perf_counter() - t0
    finally:
        stop.set()
        for p in burners:
            p.join(timeout=10)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--job", choices=("extract", "demo"), default="extract")
    ap.add_argument("--load", type=int, default=1, help="busy processes beside the command (default 1: half of 2 cores)")
    ap.add_argument("--repeats", type=int, default=2, help="runs of each configuration; the minimum is shown")
    ap.add_argument("--per-class", type=int, default=None, help="extract: only the first K images per class and split")
    ap.add_argument("--policies", choices=("both", "default"), default="both",
                    help="default: only the CLI's policy (half the runs: for the whole demo)")
    ap.add_argument("--json", default=None, help="append the figures to this results file")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="shared_cpu-"))
    try:
        (work / "data").mkdir()
        data = slice_manifest(work / "data", None if args.per_class is None else (args.per_class, args.per_class))
        times: dict[tuple[bool, int], float] = {}
        policies = (False, True) if args.policies == "both" else (False,)
        for busy in policies:
            for load in (0, args.load):
                times[(busy, load)] = min(timed(command(args.job, work, data, busy), load) for _ in range(args.repeats))
                print(f"  {'busy-wait' if busy else 'passive  '} load {load}: {times[(busy, load)]:.1f} s", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rows = []
    print(f"\n{args.job} on {os.cpu_count()} cores, {args.load} busy process(es) beside it (minimum of {args.repeats})")
    print(f"{'policy':<32} {'alone':>8} {'loaded':>8} {'loaded/alone':>13}")
    for busy, name in ((False, "passive, thread per core (default)"), (True, "OpenMP spinning (--busy-wait)"))[: len(policies)]:
        alone, loaded = times[(busy, 0)], times[(busy, args.load)]
        print(f"{name:<32} {alone:>7.1f}s {loaded:>7.1f}s {loaded / alone:>12.2f}×")
        rows += [Row(f"{args.job} {name}: alone", alone, "s"), Row(f"{args.job} {name}: loaded", loaded, "s", f"{args.load} busy process(es)"),
                 Row(f"{args.job} {name}: loaded/alone", loaded / alone, "×", "target ≤ 1.5× for the default")]  # fmt: skip
    append(args.json, "shared_cpu", rows, device="cpu")


if __name__ == "__main__":
    main()
