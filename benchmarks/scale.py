"""ImageNet scale, rehearsed on a CPU: extraction, store checks and probes at growing item counts.

Data: the synthetic source (``synthetic:N,V@8/10``: N train items, V = min(50,000, max(100, N/10))
val items, deterministic 8×8 images of 10 separable classes) through ``adm-8-scale`` with random
weights, at t 90, block 5, pools 1, 2 and full (64 + 256 + 1,024 float16 features per item). At each
size, each stage runs as its own ``diffprobe`` command in a fresh process (scale_run.py), which
reports its wall time (imports excluded) and peak RSS (VmHWM at its end, the imports' RSS
included: the figure a user's machine must hold):

  extract          the synthetic items through the model into a Zarr store (one process)
  finalize         ``store finalize``: every unit done, metadata consolidated
  info             ``store info``
  verify           ``store verify`` (metadata only)
  verify --deep    ``store verify --deep`` (every chunk read back)
  logistic         ``probe logistic`` on pool 1 (the C sweep, then the refit)
  linear           ``probe linear`` on pool 1 (--linear-epochs epochs)
  linear wide      ``probe linear`` on --wide-pool (full: 1,024 features), one epoch, its rows
                   streamed from the store above --wide-memory (1 GiB): the time of an epoch
  logistic wide    ``probe logistic`` on the same rows, streamed, at a fixed C for 5 L-BFGS
                   iterations (a pass over the rows each, with the line search's extra ones)

and, after each stage, the store's files and metadata bytes (zarr.json files + done markers). The
tables then give the growth exponent of each stage's time between sizes, log(t2/t1)/log(n2/n1) over
all items (train + val; 1.0 = linear), the growth of its peak RSS, and the files the planner would
lay out for 1.28M items × 100 keys. With --dask, one more run at --dask-size: ``extract --workers 2``
with one worker SIGKILLed mid-way (scale_dask.py), its scheduler's memory and tasks, and its store
compared byte for byte with the one-process store of that size::

    python benchmarks/scale.py                                   # 10,000 and 100,000 items
    python benchmarks/scale.py --sizes 1281167 --dask-size 0     # ImageNet's train count (~1 h)
    python benchmarks/scale.py --dask --plot docs/images/scale.png --json /tmp/scale.jsonl
    python benchmarks/scale.py --smoke                           # 1,000 and 2,000 items, with --dask: a minute

Prints tables; never asserts on time.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from scale_curves import RSS_GROWTH, SUPERLINEAR, Footprint, footprint, growth_exponent, project_split, project_store

from results import Row, append

HERE = Path(__file__).parent
STAGES = ("extract", "finalize", "info", "verify", "verify --deep", "logistic", "linear", "linear wide", "logistic wide")
#: L-BFGS iterations of the wide logistic stage (a fixed C): its time over this is the time of an iteration
WIDE_LBFGS_ITERATIONS = 5
#: Per-key bytes per item of the projection: adm-8-scale p=1, the 256 model p=1 (1,024 ch), p=2, p=4,
#: p=8 (or its 8×8 native map), and its 16×16 native map (whose shards bound the units).
PROJECTED_KEY_BYTES = (128, 2048, 8192, 32768, 131072, 524288)
IMAGENET = {"train": 1_281_167, "val": 50_000}
FILES_TARGET = 100_000


@dataclass(frozen=True)
class Run:
    """What one size runs: the data, the keys and the probes' settings."""

    train: int
    blocks: str = "5"
    pools: str = "1,2,full"
    t: str = "90"
    probe_pool: str = "1"
    linear_epochs: int = 3
    max_memory: str = "4GiB"
    wide_pool: str = "full"
    wide_memory: str = "1GiB"
    stream: bool = False
    unit_size: int | None = None

    @property
    def val(self) -> int:
        return min(50_000, max(100, self.train // 10))

    @property
    def items(self) -> int:
        return self.train + self.val

    @property
    def key_bytes(self) -> list[int]:
        """float16 bytes per item of each extracted key (block 5 of adm-8-scale: 64 channels, 4×4)."""
        return [2 * 64 * (16 if p == "full" else int(p) ** 2) for p in self.pools.split(",")]

    @property
    def data(self) -> str:
        return f"synthetic:{self.train},{self.val}@8/10"

    def extract_args(self, store: Path, workers: int = 0) -> list[str]:
        unit = ["--unit-size", str(self.unit_size)] if self.unit_size else []
        dask = ["--workers", str(workers)] if workers else []
        return ["extract", self.data, "-m", "adm-8-scale", "--random-weights", "--t", self.t, "--blocks", self.blocks,
                "--pools", self.pools, "-o", str(store), "--device", "cpu", "--no-progress", *unit, *dask]  # fmt: skip

    def stage_args(self, stage: str, store: Path, out: Path) -> list[str]:
        if stage == "extract":
            return self.extract_args(store)
        if stage in ("finalize", "info", "verify"):
            return ["store", stage, str(store)]
        if stage == "verify --deep":
            return ["store", "verify", "--deep", str(store)]
        if stage == "linear wide":  # one epoch over 64·p² features, streamed from the store above --wide-memory
            return ["probe", "linear", str(store), "--pools", self.wide_pool, "--device", "cpu", "--max-memory", self.wide_memory,
                    "--out", str(out), "--overwrite", "-p", "epochs=1", *self.streamed]  # fmt: skip
        if stage == "logistic wide":  # a fixed C, a few L-BFGS iterations: the time of a pass over the rows
            return ["probe", "logistic", str(store), "--pools", self.wide_pool, "--device", "cpu", "--max-memory", self.wide_memory,
                    "--out", str(out), "--overwrite", "-p", "C=1", "-p", f"max_iter={WIDE_LBFGS_ITERATIONS}", *self.streamed]  # fmt: skip
        probe = ["probe", stage, str(store), "--pools", self.probe_pool, "--device", "cpu", "--max-memory", self.max_memory,
                 "--out", str(out), "--overwrite", *self.streamed]  # fmt: skip
        return probe + (["-p", f"epochs={self.linear_epochs}"] if stage == "linear" else [])

    @property
    def streamed(self) -> list[str]:
        """``--stream``: the probes read their rows from the store at every size (the same work)."""
        return ["--stream"] if self.stream else []


@dataclass(frozen=True)
class Measure:
    stage: str
    items: int
    seconds: float | None
    peak_mib: float | None
    import_mib: float | None
    disk: Footprint | None
    note: str = ""


def run_stage(args: list[str], folder: Path, timeout: float, scheduler: bool = False) -> tuple[dict, str]:
    """Run ``diffprobe ARGS`` through scale_run.py in a fresh process: (its figures, its output)."""
    result = folder / "stage.json"
    result.unlink(missing_ok=True)
    cmd = [sys.executable, str(HERE / "scale_run.py"), str(result), *(["--scheduler"] if scheduler else []), "--", "-q", *args]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        output = p.stdout + p.stderr
    except subprocess.TimeoutExpired as e:
        return {"rc": f"timed out after {timeout:.0f} s"}, str(e.stdout or "")
    return (json.loads(result.read_text()) if result.exists() else {"rc": f"exit {p.returncode}"}), output


def note_of(stage: str, output: str, out: Path) -> str:
    """A short note: the probe's top-1, or the command's last line."""
    if stage in ("logistic", "linear", "linear wide", "logistic wide") and out.exists():
        r = json.loads(out.read_text())
        return f"top-1 {100 * r['metrics']['top1']:.1f}%, {r.get('n_train', '?')} train rows, chose {r.get('selected')}"
    lines = [ln for ln in output.strip().splitlines() if ln.strip() and "random weights" not in ln]
    return lines[-1].strip()[:110] if lines else ""


def measure_size(run: Run, folder: Path, timeout: float, stages: tuple[str, ...] = STAGES, reuse: bool = False) -> list[Measure]:
    """Every stage at one size; with ``reuse``, a store already in ``folder`` is not extracted again."""
    store, out = folder / f"scale-{run.train}.zarr", folder / f"probe-{run.train}.json"
    rows = []
    first = () if reuse and store.exists() else ("extract",)
    for stage in (*first, *(s for s in stages if s != "extract")):
        r, output = run_stage(run.stage_args(stage, store, out), folder, timeout)
        ok = r.get("rc") == 0
        note = note_of(stage, output, out) if ok else f"FAILED ({r.get('rc')}): {output.strip()[-300:]}"
        disk = footprint(store) if store.exists() else None
        rows.append(Measure(stage, run.items, r.get("seconds") if ok else None, r.get("peak_mib"), r.get("import_mib"), disk, note))
        print_row(rows[-1])
        out.unlink(missing_ok=True)
        if stage == "extract" and not ok:
            break
    return rows


def print_row(m: Measure) -> None:
    sec = f"{m.seconds:9.2f}" if m.seconds is not None else f"{'—':>9}"
    rss = f"{m.peak_mib:7.0f}" if m.peak_mib is not None else f"{'—':>7}"
    files = f"{m.disk.files:>7,}  {m.disk.metadata_bytes / 1024:>9,.0f}" if m.disk else f"{'—':>7}  {'—':>9}"
    print(f"{m.items:>10,}  {m.stage:<14} {sec}  {rss}  {files}  {m.note}", flush=True)


def exponent_table(rows: list[Measure]) -> list[Row]:
    """Print, per stage, the time exponent and the peak-RSS growth between consecutive sizes."""
    sizes = sorted({m.items for m in rows})
    out = []
    if len(sizes) < 2:
        return out
    print(f"\ngrowth between sizes (time exponent: 1.0 = linear; > {SUPERLINEAR} flagged; peak RSS growth > {RSS_GROWTH:.0%} flagged)")
    print(f"{'stage':<14} " + "  ".join(f"{f'{a:,}→{b:,}':>26}" for a, b in zip(sizes, sizes[1:])))
    for stage in STAGES:
        cells = []
        for a, b in zip(sizes, sizes[1:]):
            ma = next((m for m in rows if m.stage == stage and m.items == a), None)
            mb = next((m for m in rows if m.stage == stage and m.items == b), None)
            if not (ma and mb and ma.seconds and mb.seconds):
                cells.append(f"{'—':>26}")
                continue
            e = growth_exponent(a, ma.seconds, b, mb.seconds)
            g = mb.peak_mib / ma.peak_mib - 1
            flag = ("!" if e > SUPERLINEAR else " ") + ("!" if g > RSS_GROWTH else " ")
            cells.append(f"{e:>6.2f}  RSS {g:>+6.0%} {flag}".rjust(26))
            out += [Row(f"{stage}: time exponent {a}→{b}", e, "", "log(t2/t1)/log(n2/n1); 1.0 = linear"),
                    Row(f"{stage}: peak RSS growth {a}→{b}", 100 * g, "%", f"{ma.peak_mib:.0f} → {mb.peak_mib:.0f} MiB")]  # fmt: skip
        print(f"{stage:<14} " + "  ".join(cells))
    return out


def projection_table(pools_bytes: list[int]) -> list[Row]:
    """Files per store at ImageNet's 1.28M + 50k items × 100 keys, by bytes per key and item."""
    print(f"\nprojected files per store at {IMAGENET['train']:,} + {IMAGENET['val']:,} items × 100 keys "
          f"(units: all keys in 256 MiB, grown until the store holds ≤ 100,000 shard files, a shard ≤ 256 MiB, a unit ≤ 32 GiB; target < {FILES_TARGET:,})")  # fmt: skip
    print(f"{'bytes/key/item':>14}  {'unit size':>9}  {'units':>6}  {'shards':>9}  {'markers':>7}  {'files':>9}")
    out = []
    for b in pools_bytes:
        total = sum(IMAGENET.values())
        p = project_split(IMAGENET["train"], [b] * 100, total)
        v = project_split(IMAGENET["val"], [b] * 100, total)
        files = project_store(IMAGENET, [b] * 100)
        flag = "" if files < FILES_TARGET else "  over target"
        print(f"{b:>14,}  {p.unit_size:>9,}  {p.units + v.units:>6,}  {p.shards + v.shards:>9,}  {p.markers + v.markers:>7,}  {files:>9,}{flag}")
        out.append(Row(f"projected files, 1.28M items × 100 keys of {b} B", float(files), "files", f"unit size {p.unit_size}"))
    return out


def plot(rows: list[Measure], path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
    sizes = sorted({m.items for m in rows})
    for stage in STAGES:
        pts = [(m.items, m.seconds, m.peak_mib) for m in rows if m.stage == stage and m.seconds]
        if pts:
            a.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=stage)
            b.plot([p[0] for p in pts], [p[2] for p in pts], "o-", label=stage)
    if len(sizes) > 1:  # a slope-1 guide through the slowest stage's first point
        t0 = max((m.seconds for m in rows if m.items == sizes[0] and m.seconds), default=1.0)
        a.plot(sizes, [t0 * n / sizes[0] for n in sizes], "k--", lw=0.8, label="linear")
    for ax, what in ((a, "wall time (s)"), (b, "peak RSS (MiB)")):
        ax.set(xscale="log", yscale="log", xlabel="items (train + val)", ylabel=what)
        ax.grid(True, which="both", alpha=0.3)
    a.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def dask_stage(run: Run, folder: Path, reference: Path | None, timeout: float) -> list[Row]:
    """``extract --workers 2`` with one worker killed; the scheduler's figures; bytes vs one process."""
    from scale_dask import compare, run_killed

    if reference is None or not reference.exists():
        reference = folder / f"reference-{run.train}.zarr"
        r, output = run_stage(run.extract_args(reference), folder, timeout)
        if r.get("rc") != 0:
            print(f"dask: the one-process reference failed: {output[-300:]}")
            return []
    store = folder / f"dask-{run.train}.zarr"
    units = sum(project_split(n, run.key_bytes, run.items).units if run.unit_size is None else math.ceil(n / run.unit_size) for n in (run.train, run.val))
    result = folder / "stage.json"
    cmd = [sys.executable, str(HERE / "scale_run.py"), str(result), "--scheduler", "--", "-q", *run.extract_args(store, workers=2)]
    p, killer = run_killed(cmd, store, units, timeout, folder / "dask.log")
    r = json.loads(result.read_text()) if result.exists() else {"rc": f"exit {p.returncode}"}
    if r.get("rc") != 0:
        print(f"dask: FAILED ({r.get('rc')}): {p.stdout[-500:]}")
        return []
    same, what = compare(reference, store)
    killed = f"worker {killer.killed[0][0]} SIGKILLed after {killer.killed[0][1]} of {units} units" if killer.killed else "no worker killed (ended first)"
    sched = (f"scheduler: {r.get('tasks')} tasks ({r.get('rescheduled')} rescheduled), at most {r.get('max_tasks')} held at once; "
             f"client+scheduler RSS {r.get('rss_at_start_mib', 0):.0f} MiB when the scheduler started, peak {r['peak_mib']:.0f} MiB "
             f"({r['import_mib']:.0f} MiB after imports); workers' summed peak RSS {killer.workers_peak_mib:.0f} MiB")  # fmt: skip
    print(f"\ndask: {run.items:,} items, 2 workers, {killed}; {r['seconds']:.1f} s ({run.items / r['seconds']:.0f} items/s)")
    print(f"  {sched}")
    print(f"  vs one process: {'IDENTICAL' if same else 'DIFFERENT'} — {what}")
    shutil.rmtree(store, ignore_errors=True)
    return [Row("dask: extract, 2 workers, one killed", r["seconds"], "s", f"{run.items} items; {killed}"),
            Row("dask: client+scheduler peak RSS", r["peak_mib"], "MiB", sched),
            Row("dask: tasks", float(r.get("tasks") or 0), "tasks", f"{r.get('rescheduled')} rescheduled"),
            Row("dask: identical to one process", float(same), "", what)]  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000,100000", help="comma-separated train item counts (val: N/10, ≤ 50,000)")
    ap.add_argument("--pools", default="1,2,full", help="pools extracted at block 5 (64·p² features each; full = 4×4)")
    ap.add_argument("--linear-epochs", type=int, default=3)
    ap.add_argument("--max-memory", default="4GiB", help="the probes' --max-memory (above it they stream from the store)")
    ap.add_argument("--stages", default=",".join(STAGES), help=f"the stages after extract, comma-separated (default: all of {', '.join(STAGES)})")
    ap.add_argument("--stream", action="store_true", help="the probes stream their rows from the store at every size (--stream)")
    ap.add_argument("--reuse", default=None, help="a --keep run's folder: its stores (scale-N.zarr) are measured without extracting again")
    ap.add_argument("--wide-pool", default="full", help="the pool of the one-epoch wide linear probe (full: 1,024 features)")
    ap.add_argument("--wide-memory", default="1GiB", help="its --max-memory (1.28M × 1,024 float32 rows are 5.2 GB: streamed)")
    ap.add_argument("--unit-size", type=int, default=None, help="extract's --unit-size (default: automatic)")
    ap.add_argument("--dask", action="store_true", help="also the dask stage (2 workers, one killed) at --dask-size")
    ap.add_argument("--dask-size", type=int, default=100_000, help="train items of the dask stage")
    ap.add_argument("--stage-timeout", type=float, default=3 * 3600, help="seconds before a stage is stopped")
    ap.add_argument("--workdir", default=None, help="folder for the stores (default: a temporary folder, removed)")
    ap.add_argument("--keep", action="store_true", help="keep the stores")
    ap.add_argument("--plot", default=None, help="write the curves (time and peak RSS vs items, log–log) to this PNG")
    ap.add_argument("--json", default=None, help="append the figures to this results file (benchmarks/results.py)")
    ap.add_argument("--smoke", action="store_true", help="1,000 and 2,000 items, unit size 256, 1 linear epoch, --dask at 2,000")
    args = ap.parse_args()
    if args.smoke:
        args.sizes, args.unit_size, args.linear_epochs, args.dask, args.dask_size = "1000,2000", 256, 1, True, 2000
    sizes = [int(s) for s in args.sizes.split(",") if s]
    unknown = sorted({s.strip() for s in args.stages.split(",")} - set(STAGES))
    if unknown:
        ap.error(f"unknown stage(s) {unknown}; valid: {', '.join(STAGES)}")
    folder = Path(args.reuse) if args.reuse else Path(tempfile.mkdtemp(prefix="scale-", dir=args.workdir))
    args.keep = args.keep or bool(args.reuse)
    runs = [Run(n, pools=args.pools, linear_epochs=args.linear_epochs, max_memory=args.max_memory, unit_size=args.unit_size,
                wide_pool=args.wide_pool, wide_memory=args.wide_memory, stream=args.stream) for n in sizes]  # fmt: skip
    header = (f"scale rehearsal: {platform.node()}, {__import__('os').cpu_count()} CPU cores, {time.strftime('%Y-%m-%d')}; "
              f"adm-8-scale (random weights), t 90, block 5, pools {args.pools}; probes on pool 1 (--max-memory {args.max_memory}"
              f"{', --stream' if args.stream else ''})")  # fmt: skip
    print(header)
    print(f"\n{'items':>10}  {'stage':<14} {'seconds':>9}  {'peak MiB':>7}  {'files':>7}  {'meta KiB':>9}  note")
    rows: list[Measure] = []
    extra: list[Row] = []
    try:
        for run in runs:
            rows += measure_size(run, folder, args.stage_timeout, tuple(s.strip() for s in args.stages.split(",")), bool(args.reuse))
            if not (args.dask and run.train == args.dask_size or args.keep):
                shutil.rmtree(folder / f"scale-{run.train}.zarr", ignore_errors=True)
        extra += exponent_table(rows)
        key_bytes = sorted({*PROJECTED_KEY_BYTES})
        extra += projection_table(key_bytes)
        if args.dask and args.dask_size:
            run = Run(args.dask_size, pools=args.pools, unit_size=args.unit_size)
            extra += dask_stage(run, folder, folder / f"scale-{run.train}.zarr", args.stage_timeout)
        if args.plot:
            plot(rows, args.plot, header.split("; ", 1)[1])
            print(f"\ncurves: {args.plot}")
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    stage_rows = [Row(f"{m.stage} @ {m.items}", m.seconds, "s", f"peak RSS {m.peak_mib} MiB; "
                      f"{m.disk.files if m.disk else '—'} files; {m.note}") for m in rows]  # fmt: skip
    append(args.json, "scale", stage_rows + extra, device="cpu")


if __name__ == "__main__":
    main()
