"""gpu_probes.py's scale and attention stages: probes on synthetic stores of ImageNet size.

scale: logistic and a 4-lr linear probe on (N, D) float16 "pooled" features; attention: the
attention head on (N, C, 16, 16) native maps. Each writes its store (synthetic_store.py) into its
own folder, which the caller deletes after writing the figures.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from budget import PROGRESS, Budget, Report, gpu_peak, host_memory, step
from synthetic_store import class_means, disk_ok, write_synthetic

log = logging.getLogger("gpu_probes")
LINEAR_LRS = (1e-3, 3e-3, 1e-2, 3e-2)
FIT_TARGET_S = 300.0
#: Rows a streamed probe reads at a time (load_features' row_chunks), as the read pass does.
READ_CHUNK = 65536
#: How a split above max_memory reaches a probe on CUDA (the probes decide; see their docs).
ON_GPU = ", or held on the GPU where it fits (see the probes' docs)"


@dataclass(frozen=True)
class ScaleConfig:
    """budget: seconds of wall time (writing gets at most 40%); n train items × dim float16 features
    of ``classes`` classes (val: min(50,000, n/10)); max_memory: the probes' --max-memory (bytes)."""

    budget: float = 90.0
    n: int = 1_281_167
    dim: int = 4096
    classes: int = 1000
    max_memory: int = 4 * 2**30


@dataclass(frozen=True)
class AttentionConfig:
    """budget: seconds of wall time (writing gets at most 50%); n train maps of channels × size × size
    float16 (val: min(1,000, n/10)); epochs of the probe's head; dim: head width (None: the probe's)."""

    budget: float = 45.0
    n: int = 50_000
    channels: int = 1024
    size: int = 16
    classes: int = 1000
    epochs: int = 1
    dim: int | None = None
    max_memory: int = 4 * 2**30


def streamed_how(dev: Any, detail: str = "") -> str:
    return f"streamed from the store{detail}" + (ON_GPU if dev.type == "cuda" else "")


def fit_rows(report: Report, budget: Budget, what: str, store: Path, config: Any, share: float, epochs: int, how: str,
             chance: float) -> None:  # fmt: skip
    """Run one probe on ``store`` within ``share`` of the budget; report fit time, top-1 and load + eval,
    or, when stopped, the rate per epoch / per C it had reached."""
    from diffprobe.probes.run import run_probe

    PROGRESS.reset()
    t0 = time.perf_counter()
    stopped: list[tuple[float, str, str]] = []

    def over(elapsed: float) -> str:
        rate = PROGRESS.rate(t0, epochs)
        stopped.extend([rate] if rate else [])
        done = rate[2] if rate else "no epoch or C value finished"
        return f"over budget after {elapsed:.0f} s: {done} (target < {FIT_TARGET_S:.0f} s); {how}"

    res = step(report, budget, f"{what} fit", lambda: run_probe(store, config), share, over)
    if res is None:
        for value, unit, note in stopped:  # a figure for the table even when the fit was stopped
            report.add(f"{what} per {unit.split('/')[1]}", value, unit, note)
        return
    wall = time.perf_counter() - t0
    met = "met" if res.fit_seconds < FIT_TARGET_S else "NOT met"
    report.add(f"{what} fit", res.fit_seconds, "s", f"target < {FIT_TARGET_S:.0f} s: {met}; {res.n_train:,} train rows {how}; "
               f"chose {res.selected}")  # fmt: skip
    report.add(f"{what} top-1", 100 * res.metrics["top1"], "%", f"{res.n_eval:,} val items, chance {100 * chance:.2g}%")
    report.add(f"{what} load+eval", wall - res.fit_seconds, "s", "run_probe's wall time minus the fit")


def read_pass(path: Path, key: str) -> float:
    """Seconds to read the train split once as a streamed probe does (row_chunks of READ_CHUNK rows)."""
    from diffprobe.probes.arrays import row_chunks
    from diffprobe.probes.data import load_features
    from diffprobe.store import open_store

    with open_store(path) as s:
        X = load_features(s, "train", [key], lazy=True).X
        t0 = time.perf_counter()
        for _ in row_chunks(X, READ_CHUNK):
            pass
        return time.perf_counter() - t0


def scale_stage(cfg: ScaleConfig, dev: Any, report: Report, budget: Budget, folder: Path) -> None:
    """Write (N, D) features, time one streamed read pass, then the logistic and 4-lr linear calls."""
    from diffprobe.probes.plan import DataConfig
    from diffprobe.probes.result import ProbeConfig
    from diffprobe.store.layout import FeatureKey

    key, shape = FeatureKey(150, 24, 1), (cfg.dim, 1, 1)
    counts = {"val": min(50_000, max(cfg.n // 10, cfg.classes)), "train": cfg.n}
    path = folder / "scale.zarr"
    if not disk_ok(report, "scale: write", folder, sum(counts.values()) * cfg.dim * 2):
        return
    log.info("scale: writing %s items × %d float16 (%d classes) into %s", counts, cfg.dim, cfg.classes, path)
    stop_at = time.perf_counter() + 0.4 * budget.left()
    means = (cfg.classes, shape)
    written = step(
        report, budget, "scale: write", lambda: write_synthetic(path, key, shape, counts, class_means(*means, dev), dev, stop_at)
    )
    if written is None:
        return
    written.report(report, "scale", dev)
    f32 = cfg.n * cfg.dim * 4  # what load_features compares with max_memory: every row, written or not
    streamed = f32 > cfg.max_memory
    if streamed:
        log.info("scale: one streamed read pass over train (as a streamed L-BFGS evaluation / linear epoch reads it)")
        seconds = step(report, budget, "scale: read pass", lambda: read_pass(path, key.name), 0.25)
        if seconds is not None:
            report.add("scale: read pass", seconds, "s", f"{cfg.n:,} × {cfg.dim} from the store in {READ_CHUNK:,}-row chunks "
                       f"(dask): {cfg.n * cfg.dim * 2 / 1e6 / seconds:.0f} MB/s of float16; what each L-BFGS evaluation and "
                       "each linear epoch costs at least when the split is streamed rather than held on the GPU")  # fmt: skip
    elif 4 * f32 > 0.9 * host_memory():
        report.add("scale: fits", None, "s", f"not supported here: loading needs ~{4 * f32 / 1e9:.0f} GB of host memory at the peak, "
                   f"the host has {host_memory() / 1e9:.0f} GB; use a smaller --scale-max-memory (streams)")  # fmt: skip
        return
    how = streamed_how(dev) if streamed else "loaded into memory"
    data = DataConfig(max_memory=cfg.max_memory)
    chance = 1 / cfg.classes
    log.info("scale: logistic (C sweep on a hold-out, refit) on %s, %s", dev, how)
    logistic = ProbeConfig("logistic", (key.name,), {"device": str(dev)}, data)
    fit_rows(report, budget, "scale: logistic", path, logistic, 0.5, 0, how, chance)
    log.info("scale: linear, lrs %s (hold-out, then refit at the best)", LINEAR_LRS)
    linear = ProbeConfig("linear", (key.name,), {"lr": LINEAR_LRS, "device": str(dev)}, data)
    fit_rows(report, budget, "scale: linear-4lr", path, linear, 1.0, 56, how, chance)


def attention_stage(cfg: AttentionConfig, dev: Any, report: Report, budget: Budget, folder: Path) -> None:
    """Write (N, C, S, S) maps, then the default attention call (standardised) for ``cfg.epochs``."""
    from diffprobe.probes.attention import AttentionProbe
    from diffprobe.probes.plan import DataConfig
    from diffprobe.probes.result import ProbeConfig
    from diffprobe.probes.run import run_probe
    from diffprobe.probes.standardize import CHUNK_BYTES
    from diffprobe.store.layout import FeatureKey

    key, shape = FeatureKey(150, 24, None), (cfg.channels, cfg.size, cfg.size)
    d = int(np.prod(shape))
    counts = {"val": min(1000, max(cfg.n // 10, 1)), "train": cfg.n}
    path = folder / "attention.zarr"
    if not disk_ok(report, "attention: write", folder, sum(counts.values()) * d * 2):
        return
    log.info("attention: writing %s maps %s float16 into %s", counts, shape, path)
    stop_at = time.perf_counter() + 0.5 * budget.left()
    means = (cfg.classes, (cfg.channels, 1, 1))  # per channel, the same over the map
    written = step(
        report, budget, "attention: write", lambda: write_synthetic(path, key, shape, counts, class_means(*means, dev), dev, stop_at)
    )
    if written is None:
        return
    written.report(report, "attention", dev)
    n = written.items["train"]
    probe = AttentionProbe()
    streamed = cfg.n * d * 4 > cfg.max_memory
    params: dict[str, Any] = {"device": str(dev), "epochs": cfg.epochs, **({"dim": cfg.dim} if cfg.dim else {})}
    chunk = f" in chunks of {probe.chunk_size:,} rows ({probe.chunk_size * d * 4 / 1e9:.1f} GB float32)"
    how = streamed_how(dev, chunk) if streamed else "loaded into memory"
    config = ProbeConfig("attention", (key.name,), params, DataConfig(max_memory=cfg.max_memory))
    log.info("attention: %d epoch(s) over %d maps on %s, %s", cfg.epochs, n, dev, how)
    PROGRESS.reset()
    t0 = time.perf_counter()

    def over(elapsed: float) -> str:
        done = len(PROGRESS.epochs)  # n·done/elapsed undercounts the rate (part of an epoch ran too); n/elapsed overcounts it
        bound = f"≥ {n * done / elapsed:.0f} img/s" if done else f"< {n / elapsed:.0f} img/s"
        return f"over budget after {elapsed:.0f} s, {done} of {cfg.epochs} epochs: {bound}; {how}"

    with gpu_peak(dev) as peak:
        res = step(report, budget, "attention: fit", lambda: run_probe(path, config), 1.0, over)
    if res is None:
        return
    wall = time.perf_counter() - t0
    note = f"{cfg.epochs} epoch(s) × {n:,} maps {shape}, dim {params.get('dim', probe.dim)}, standardised (the default)"
    report.add("attention: fit", res.fit_seconds, "s", f"{note}{''.join(peak)}")
    report.add("attention: train throughput", n * cfg.epochs / res.fit_seconds, "img/s",
               f"{how}; the fit includes the standardisation pass (chunks of ≤ {CHUNK_BYTES / 2**20:.0f} MiB of float64)")  # fmt: skip
    report.add("attention: load+eval", wall - res.fit_seconds, "s", f"load (train lazy: {streamed}) + {res.n_eval:,} val maps predicted")
    report.add("attention: top-1", 100 * res.metrics["top1"], "%", f"chance {100 / cfg.classes:.2g}%; short training")
