"""Running an extraction in this process: data loading, compute, background writes, progress, resume."""

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

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from diffprobe.errors import DataError, StoreError
from diffprobe.extract.config import ExtractConfig
from diffprobe.extract.data import ImageDataset, Item
from diffprobe.extract.registry import load_backbone
from diffprobe.extract.run import ComputeSpec, FeatureComputer, default_forward_batch, resolve_device, resolve_precision
from diffprobe.pipelines.extract_plan import ExtractPlan, make_plan, pending_units, prepare_store
from diffprobe.store.progress import BackgroundWriter, UnitBuffer, UnitTask
from diffprobe.store.store import FeatureStore

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

    @property
    def items_per_second(self) -> float:
        return self.items / self.seconds if self.seconds > 0 else 0.0

    def lines(self) -> list[str]:
        if self.dry_run:
            p = self.plan
            out = [f"dry run: would write {p['store']} ({p['format']}, config {p['config_hash']})"]
            out += [f"  model {p['model']}, precision {p['precision']}, splits {p['splits']}, {p['classes']} classes"]
            out += [f"  block {b}" for b in p["blocks"]]
            out += [f"  array {a}" for a in p["arrays"]]
            out += [f"  pending units: {self.units_run} of {self.units_total}; estimated size ≤ {_fmt_bytes(p['estimated_bytes'])} (uncompressed)"]
            return out
        return [
            f"store {self.store} (config {self.config_hash})",
            f"  units: {self.units_run} run, {self.units_skipped} already done, {self.units_total} total",
            f"  items: {self.items} ({self.forwards} U-Net forwards), failed: {len(self.failures)}",
            f"  time: {self.seconds:.1f} s, {self.items_per_second:.1f} items/s, written {_fmt_bytes(self.bytes_written)}",
            *[f"  failed: [{s}] {i}: {e}" for s, i, e in self.failures[:20]],
        ]


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n} B"


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


class _Stage:
    """Loaded rows waiting for a full forward batch (never more than one unit's worth)."""

    def __init__(self) -> None:
        self.idx: list[np.ndarray] = []
        self.x0: list[torch.Tensor] = []
        self.ok: list[np.ndarray] = []
        self.err: list[str] = []
        self.n = 0
        self.end = 0

    def add(self, idx: np.ndarray, x0: torch.Tensor, ok: np.ndarray, err: list[str]) -> None:
        self.idx.append(idx)
        self.x0.append(x0)
        self.ok.append(ok)
        self.err += err
        self.n += len(idx)
        self.end = int(idx[-1]) + 1

    def take(self, m: int) -> tuple[np.ndarray, torch.Tensor, np.ndarray, list[str]]:
        idx, x0, ok = np.concatenate(self.idx), torch.cat(self.x0), np.concatenate(self.ok)
        k = min(m, len(idx))
        out = idx[:k], x0[:k], ok[:k], self.err[:k]
        self.idx, self.x0, self.ok, self.err = [idx[k:]], [x0[k:]], [ok[k:]], self.err[k:]
        self.n -= k
        return out


def _collate(batch: list[tuple[int, np.ndarray, bool, str]]) -> tuple[np.ndarray, torch.Tensor, np.ndarray, list[str]]:
    idx = np.array([b[0] for b in batch])
    x = torch.from_numpy(np.stack([b[1] for b in batch]))
    ok = np.array([b[2] for b in batch])
    return idx, x, ok, [b[3] for b in batch]


def _loader_workers(config: ExtractConfig, device: torch.device) -> int:
    if config.loader_workers is not None:
        return config.loader_workers
    cpus = os.cpu_count() or 1
    return min(8, cpus) if device.type == "cuda" else min(2, max(cpus - 1, 0))


def batches_of(tasks: list[UnitTask], batch_size: int) -> list[list[int]]:
    """Index batches that never straddle two units."""
    out = []
    for t in tasks:
        out += [list(range(s, min(s + batch_size, t.stop))) for s in range(t.start, t.stop, batch_size)]
    return out


def run_tasks(
    store: FeatureStore,
    plan: ExtractPlan,
    tasks: list[UnitTask],
    computer: FeatureComputer,
    workers: int,
    progress: bool | None = None,
) -> tuple[int, int, list[tuple[str, str, str]], int]:
    """Compute and write ``tasks``. Returns (items, forwards, failures, bytes written)."""
    cfg = plan.config
    writer = BackgroundWriter(store)
    items = forwards = 0
    failures: list[tuple[str, str, str]] = []
    total = sum(t.size for t in tasks)
    bar = tqdm(total=total, unit="img", desc="extract", disable=None if progress is None else not progress, smoothing=0.1)
    try:
        for split in dict.fromkeys(t.split for t in tasks):
            split_tasks = [t for t in tasks if t.split == split]
            split_items: list[Item] = plan.data.splits[split]
            ds = ImageDataset(split_items, plan.adm.image_size)
            loader = DataLoader(
                ds,  # type: ignore[arg-type]
                batch_sampler=batches_of(split_tasks, cfg.batch_size),
                num_workers=workers,
                pin_memory=computer.device.type == "cuda",
                collate_fn=_collate,
                persistent_workers=False,
            )
            it = iter(split_tasks)
            task = next(it)
            buf = UnitBuffer(task, plan.shapes, cfg.dtype)
            stage = _Stage()
            for idx, x0, ok, errs in loader:
                if idx[0] >= task.stop:
                    task = next(it)
                    buf = UnitBuffer(task, plan.shapes, cfg.dtype)
                for i, good, e in zip(idx, ok, errs):
                    if not good:
                        if cfg.strict:
                            raise DataError(f"cannot decode {split_items[i].path}: {e} (--strict stops at the first bad image)")
                        log.warning("cannot decode %s (%s); recorded as failed", split_items[i].path, e)
                stage.add(idx, x0, ok, errs)
                # Forward batches are aligned to the unit start, so each item's batch-mates do not
                # depend on the loader batch size.
                unit_end = stage.end >= task.stop
                while stage.n >= plan.forward_batch or (unit_end and stage.n):
                    b_idx, b_x0, b_ok, b_err = stage.take(plan.forward_batch)
                    feats = computer.compute(b_x0, [split_items[i].id for i in b_idx], task.keys)
                    bad = [(split_items[i].id, e) for i, good, e in zip(b_idx, b_ok, b_err) if not good]
                    buf.add(int(b_idx[0]), feats, b_ok, bad)
                    items += len(b_idx)
                    forwards += len(b_idx) * len({k.t for k in task.keys}) * cfg.draws
                    bar.update(len(b_idx))
                if buf.complete:
                    failures += [(split, i, e) for i, e in buf.failures]
                    writer.submit(buf)
    finally:
        bar.close()
        writer.close()  # finishes every complete unit already submitted; partial units are dropped
    return items, forwards, failures, writer.bytes_written


def extract(config: ExtractConfig, *, dry_run: bool = False, progress: bool | None = None) -> ExtractSummary:
    """Extract features for ``config`` into its store (the library entry point of ``diffprobe extract``).

    Re-running skips finished units; new timesteps, blocks or pools add only their arrays.

    Raises:
        StoreError: the store exists with another configuration (nothing is changed).
        ConfigError / DataError / CheckpointError: bad options, data or checkpoint.
    """
    device = resolve_device(config.device)
    precision = resolve_precision(config.precision, device)
    plan = make_plan(config, precision, config.forward_batch or default_forward_batch(device))
    if dry_run:
        return _dry_run_summary(plan)
    t0 = time.perf_counter()
    store = prepare_store(plan)
    try:
        tasks = pending_units(store, plan)
        n_units = sum(len(store.units(s)) for s in plan.data.splits)
        summary = ExtractSummary(str(store.path), plan.hash, n_units, len(tasks), n_units - len(tasks), 0, 0)
        if tasks:
            bb = load_backbone(config.model, config.checkpoint, device=device, class_label=config.class_label, **config.flag_dict)
            spec = ComputeSpec(config.seed, config.draws, config.reduce, precision, config.dtype, plan.forward_batch)
            computer = FeatureComputer(bb, device, spec)
            log.info("extracting %d units on %s (%s) into %s", len(tasks), device, precision, store.path)
            with _sigterm_as_interrupt():
                try:
                    items, fwd, fails, nbytes = run_tasks(store, plan, tasks, computer, _loader_workers(config, device), progress)
                except KeyboardInterrupt:
                    log.warning(
                        "interrupted: finished units are saved; the units in flight were discarded. "
                        "Re-run the same command to resume."
                    )
                    raise
            summary.items, summary.forwards, summary.failures, summary.bytes_written = items, fwd, fails, nbytes
        summary.seconds = time.perf_counter() - t0
    finally:
        store.close()
    for line in summary.lines():
        log.info(line)
    return summary


def _dry_run_summary(plan: ExtractPlan) -> ExtractSummary:
    """What a run would do, without writing anything (an existing store is only read)."""
    from diffprobe.pipelines.extract_plan import identity_diff
    from diffprobe.store.layout import auto_unit_size, plan_units
    from diffprobe.store.store import open_store

    info = plan.summary()
    out = plan.config.out
    n_units = pending = 0
    existing = None
    if os.path.exists(out) and not plan.config.overwrite:
        existing = open_store(out)
        diffs = identity_diff(existing.attrs.get("identity", {}), plan.identity)
        if diffs:
            existing.close()
            raise StoreError("would be refused: store was made with another configuration:\n  " + "\n  ".join(diffs))
    try:
        for split, items in plan.data.splits.items():
            if existing is not None and split in existing.splits:
                units = existing.units(split)
                marks = existing.markers(split)
                pending += sum(1 for u in range(len(units)) if any(str(k) not in marks.get(u, {}).get("keys", ()) for k in plan.keys))
            else:
                unit = plan.config.unit_size or auto_unit_size(max(plan.item_bytes(), 1), len(items))
                units = plan_units(len(items), unit)
                pending += len(units)
            n_units += len(units)
    finally:
        if existing is not None:
            existing.close()
    return ExtractSummary(out, plan.hash, n_units, pending, n_units - pending, 0, 0, dry_run=True, plan=info)
