"""The extraction entry point: plan, prepare the store, run pending units, summarise."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from diffprobe.device import resolve_device
from diffprobe.errors import StoreError
from diffprobe.extract.compute import FeatureComputer
from diffprobe.extract.config import ExtractConfig
from diffprobe.pipelines.extraction.local import RunStats, loader_workers, run_tasks
from diffprobe.pipelines.extraction.plan import ExtractPlan, make_plan
from diffprobe.pipelines.extraction.prepare import identity_diff, pending_units, prepare_store, refused, todo_keys, unit_size_for
from diffprobe.sizes import format_bytes
from diffprobe.store.layout import plan_units
from diffprobe.store.progress import UnitTask
from diffprobe.store.store import open_store

log = logging.getLogger(__name__)


@dataclass
class ExtractSummary:
    """What a run did: items processed, failures, time, throughput, bytes written."""

    store: str
    config_hash: str
    units_total: int
    units_run: int
    units_skipped: int
    items: int
    forwards: int
    failures: list[tuple[str, str, str]] = field(default_factory=list)
    seconds: float = 0.0
    bytes_written: int = 0
    dry_run: bool = False
    plan: dict[str, Any] = field(default_factory=dict)
    #: items/s after the first result (no model loading, store creation or compilation)
    steady_items_per_second: float | None = None

    @property
    def items_per_second(self) -> float:
        return self.items / self.seconds if self.seconds > 0 else 0.0

    def lines(self) -> list[str]:
        if self.dry_run:
            p = self.plan
            out = [f"dry run: would write {p['store']} ({p['format']}, config {p['config_hash']})"]
            out += [f"  model {p['model']}, weights {p['weights']}, precision {p['precision']}"]
            out += [f"  splits {p['splits']}, {p['classes']} classes"]
            out += [f"  forward: {p['forward_batch']} images × {p['fuse_timesteps']} fused (t, draw) passes"]
            out += [f"  block {b}" for b in p["blocks"]]
            out += [f"  array {a}" for a in p["arrays"]]
            out += [f"  pending units: {self.units_run} of {self.units_total}; estimated size ≤ {format_bytes(p['estimated_bytes'])} (uncompressed)"]
            return out
        return [
            f"store {self.store} (config {self.config_hash})",
            f"  units: {self.units_run} run, {self.units_skipped} already done, {self.units_total} total",
            f"  items: {self.items} ({self.forwards} U-Net forwards), failed: {len(self.failures)}",
            f"  time: {self.seconds:.1f} s, {self.items_per_second:.1f} items/s"
            + (f" ({self.steady_items_per_second:.1f}/s steady)" if self.steady_items_per_second else "")
            + f", written {format_bytes(self.bytes_written)}",
            *[f"  failed: [{s}] {i}: {e}" for s, i, e in self.failures[:20]],
        ]


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM like Ctrl-C so a terminated run stops between units and keeps its store consistent."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def extract_features(config: ExtractConfig, *, dry_run: bool = False, progress: bool | None = None) -> ExtractSummary:
    """Extract features for ``config`` into its store (the library entry point of ``diffprobe extract``).

    Re-running skips finished units; new timesteps, blocks or pools add only their arrays.

    Raises:
        StoreError: the store exists with another configuration (nothing is changed).
        ConfigError / DataError / CheckpointError: bad options, data or checkpoint.
    """
    device = resolve_device(config.device)
    plan = make_plan(config, device)
    if dry_run:
        return _dry_run_summary(plan)
    t0 = time.perf_counter()
    store, plan = prepare_store(plan)
    try:
        tasks = pending_units(store, plan, config.shard)
        n_all = sum(len(store.units(s)) for s in plan.data.splits)
        n_units = n_all if config.shard is None else len(range(config.shard[0], n_all, config.shard[1]))
        summary = ExtractSummary(str(store.path), plan.hash, n_units, len(tasks), n_units - len(tasks), 0, 0)
        if tasks:
            spec = plan.compute
            where = f"shard {config.shard[0]}/{config.shard[1]}, " if config.shard else ""
            with _sigterm_as_interrupt():
                try:
                    if config.workers or config.scheduler:
                        result = _run_on_dask(plan, tasks, device, progress)
                    else:
                        computer = FeatureComputer.for_config(config, spec, device)
                        log.info(
                            "extracting %d units (%s%s, %s, forwards of %d images × %d passes) into %s",
                            len(tasks), where, device, spec.precision, spec.forward_batch, spec.fuse, store.path,
                        )  # fmt: skip
                        result = run_tasks(store, plan, tasks, computer, loader_workers(config, device), progress)
                except KeyboardInterrupt:
                    log.warning(
                        "interrupted: finished units are saved; the units in flight were discarded. "
                        "Re-run the same command to resume."
                    )
                    raise
            summary.items, summary.forwards, summary.failures = result.items, result.forwards, result.failures
            summary.bytes_written, summary.steady_items_per_second = result.bytes_written, result.steady_items_per_second
        summary.seconds = time.perf_counter() - t0
    finally:
        store.close()
    for line in summary.lines():
        log.debug(line)
    return summary


def _run_on_dask(plan: ExtractPlan, tasks: list[UnitTask], device: torch.device, progress: bool | None) -> RunStats:
    from diffprobe.pipelines.extraction.cluster import WorkerSpec, run_distributed

    cfg = plan.config
    workers = cfg.workers
    threads = max(1, (os.cpu_count() or 1) // workers) if workers and device.type == "cpu" else 0
    wspec = WorkerSpec(
        config=cfg, compute=plan.compute, shapes=tuple(plan.shapes.items()), image_size=plan.adm.image_size,
        device="cuda" if device.type == "cuda" and workers else str(device), threads=threads,
    )
    where = f"scheduler {cfg.scheduler}" if cfg.scheduler else f"{workers} local dask workers"
    log.info("extracting %d units on %s into %s", len(tasks), where, cfg.out)
    return run_distributed(plan, tasks, wspec, workers, cfg.scheduler, device, progress)


def _dry_run_summary(plan: ExtractPlan) -> ExtractSummary:
    """What a run would do, without writing anything (an existing store is only read)."""
    info = plan.summary()
    out = plan.config.out
    n_units = pending = 0
    existing = None
    if os.path.exists(out) and not plan.config.overwrite:
        existing = open_store(out)
        diffs = identity_diff(existing.attrs.get("identity", {}), plan.identity)
        if diffs:
            existing.close()
            raise StoreError(f"would be refused: store {refused(diffs)}")
    try:
        for split, items in plan.data.splits.items():
            if existing is not None and split in existing.splits:
                units = existing.units(split)
                marks = existing.markers(split)
                pending += sum(1 for u in range(len(units)) if todo_keys(plan, marks.get(u, {})))
            else:
                units = plan_units(len(items), unit_size_for(plan, len(items)))
                pending += len(units)
            n_units += len(units)
    finally:
        if existing is not None:
            existing.close()
    return ExtractSummary(out, plan.hash, n_units, pending, n_units - pending, 0, 0, dry_run=True, plan=info)
