"""Running extraction units in this process: DataLoader decoding, aligned forward batches (on a CPU,
several at once: :mod:`~diffprobe.pipelines.extraction.streams`), background writes."""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from diffprobe.errors import DataError
from diffprobe.extract.compute import FeatureComputer, Pending
from diffprobe.extract.compute_spec import ComputeSpec
from diffprobe.extract.config import ExtractConfig
from diffprobe.extract.dataset import ImageDataset
from diffprobe.extract.noise import Pass
from diffprobe.extract.sources.item import Item
from diffprobe.pipelines.extraction.interrupt import check, quiet_loader_handover_errors
from diffprobe.pipelines.extraction.loading import Chunk, SplitsDataset, Stage, collate, run_batches
from diffprobe.pipelines.extraction.plan import ExtractPlan
from diffprobe.pipelines.extraction.streams import forward_streams, stream_pool
from diffprobe.progress import bar_disabled
from diffprobe.store.progress import BackgroundWriter, UnitBuffer, UnitTask
from diffprobe.store.store import FeatureStore

log = logging.getLogger(__name__)

@dataclass
class RunStats:
    """What running a list of units did."""

    items: int = 0
    forwards: int = 0
    failures: list[tuple[str, str, str]] = field(default_factory=list)
    bytes_written: int = 0
    #: items/s from the first finished result (forward batch, or unit on dask) to the last write:
    #: the steady rate, without loading the model, creating the store or compiling
    steady_items_per_second: float | None = None
    _first: tuple[float, int] | None = None

    def mark(self) -> None:
        """Call after each result; the first call starts the steady-rate clock."""
        if self._first is None:
            self._first = (time.perf_counter(), self.items)

    def finish(self) -> RunStats:
        if self._first is not None:
            dt = time.perf_counter() - self._first[0]
            n = self.items - self._first[1]
            self.steady_items_per_second = n / dt if n and dt > 0 else None
        return self


def report_bad(items: Sequence[Item] | Mapping[int, Item], idx: np.ndarray, ok: np.ndarray, errs: list[str], strict: bool) -> None:
    """Warn about (or, with ``strict``, stop at) images that could not be decoded."""
    for i, good, e in zip(idx, ok, errs):
        if not good:
            it = items[i]
            where = it.path if it.kind == "file" else f"{it.id} in {it.path}" + (f" (byte {it.offset})" if it.kind == "tar" else f" (row {it.offset})")
            if strict:
                raise DataError(f"cannot decode {where}: {e} (--strict stops at the first bad image)")
            log.warning("cannot decode %s (%s); recorded as failed", where, e)


@dataclass
class InFlight:
    """One launched forward batch of a unit, until its results are filed into the unit's buffer."""

    buf: UnitBuffer
    idx: np.ndarray
    ok: np.ndarray
    bad: list[tuple[str, str]]
    pending: Pending | Future[Pending]  # a Future when a stream thread computes it
    forwards: int  # rows × U-Net passes

    def finish(self, computer: FeatureComputer) -> None:
        pending = self.pending.result() if isinstance(self.pending, Future) else self.pending
        self.buf.add(int(self.idx[0]), pending.result(), self.ok, self.bad)
        self.buf.compute = computer.provenance


def launch_chunk(
    computer: FeatureComputer, buf: UnitBuffer, items: Sequence[Item] | Mapping[int, Item], chunk: Chunk,
    passes: tuple[Pass, ...], pool: ThreadPoolExecutor | None = None,
) -> InFlight:  # fmt: skip
    """Start one forward batch of a unit (on ``pool``'s threads when given); ``passes`` are the
    (view, t, draw) passes along the chunk's noise axis."""
    idx, x0, ok, errs, eps = chunk
    # One (pinned, asynchronous) copy of all the chunk's noise; the per-pass slices are then views
    # on the device, not strided host tensors that would need a synchronous staging copy each.
    eps = eps.to(computer.device, non_blocking=True)
    noise = {p: eps[:, j] for j, p in enumerate(passes)}
    ids = [items[i].id for i in idx]
    pending = computer.launch(x0, ids, buf.task.keys, noise) if pool is None else pool.submit(computer.launch, x0, ids, buf.task.keys, noise)
    bad = [(items[i].id, e) for i, good, e in zip(idx, ok, errs) if not good]
    n_passes = len(computer.spec.passes(k.t for k in buf.task.keys))
    return InFlight(buf, idx, ok, bad, pending, len(idx) * n_passes)


def compute_chunk(
    computer: FeatureComputer, buf: UnitBuffer, items: Sequence[Item] | Mapping[int, Item], chunk: Chunk,
    passes: tuple[Pass, ...],
) -> int:  # fmt: skip
    """Run one forward batch of a unit into its buffer, waiting for it. Returns rows × U-Net passes."""
    f = launch_chunk(computer, buf, items, chunk, passes)
    f.finish(computer)
    return f.forwards


def noise_passes(tasks: list[UnitTask], spec: ComputeSpec) -> tuple[Pass, ...]:
    """Every (view, t, draw) the tasks need noise for, in a fixed order."""
    return spec.passes(k.t for task in tasks for k in task.keys)


def loader_workers(config: ExtractConfig, device: torch.device) -> int:
    """Decoding processes: as configured, else up to 8 on GPU and (cores − 1) ≤ 2 on CPU."""
    if config.loader_workers is not None:
        return config.loader_workers
    cpus = os.cpu_count() or 1
    return min(8, cpus) if device.type == "cuda" else min(2, max(cpus - 1, 0))


def _warn_if_input_bound(waited: float, total: float, workers: int) -> None:
    """Say so when the device waited for decoded images for a large share of the time."""
    if total > 10 and waited / total > 0.25:
        log.warning(
            "decoding is the bottleneck: %.0f%% of %.0f s was spent waiting for images "
            "(%d loader workers); raise --loader-workers or store images smaller",
            100 * waited / total, total, workers,
        )  # fmt: skip


def run_tasks(
    store: FeatureStore,
    plan: ExtractPlan,
    tasks: list[UnitTask],
    computer: FeatureComputer,
    workers: int,
    progress: bool | None = None,
) -> RunStats:
    """Compute and write ``tasks`` in this process."""
    cfg, spec = plan.config, plan.compute
    writer = BackgroundWriter(store)
    stats = RunStats()
    # Forward batches launched but not yet filed: while the device computes the newest one, the
    # host files the one before it (copies, buffers, writes) — on a GPU nothing waits in between.
    # On a CPU with n streams, n compute at once and one more waits for the first free thread.
    inflight: deque[InFlight] = deque()
    n_streams = forward_streams(computer.device.type, computer.spec.compile)
    if workers:
        quiet_loader_handover_errors()
    filling: list[UnitBuffer] = []  # units not yet complete: the pieces they put aside go if the run stops

    def settle(keep: int) -> None:
        while len(inflight) > keep:
            f = inflight.popleft()
            f.finish(computer)
            stats.forwards += f.forwards
            stats.items += len(f.idx)
            stats.mark()
            bar.update(len(f.idx))
            if f.buf.complete:
                stats.failures += [(f.buf.task.split, i, e) for i, e in f.buf.failures]
                writer.submit(f.buf)

    def new_buffer(task: UnitTask) -> UnitBuffer:
        buf = UnitBuffer(task, plan.shapes, spec.out_dtype, store)
        filling[:] = [*(b for b in filling if not b.complete), buf]  # (complete: the writer's)
        return buf

    # One loader over every split: its workers start once, before any unit is done.
    by_split = {s: [t for t in tasks if t.split == s] for s in dict.fromkeys(t.split for t in tasks)}
    passes = {s: noise_passes(ts, spec) if plan.model.noised else () for s, ts in by_split.items()}
    size = plan.model.image_size
    datasets = {s: ImageDataset(plan.data.splits[s], size, passes[s], spec.seed, plan.model.noise_shape, spec.view_spec(size)) for s in by_split}
    batches = run_batches(by_split, cfg.batch_size)
    loader: DataLoader = DataLoader(
        SplitsDataset(datasets),  # type: ignore[arg-type]
        batch_sampler=batches,  # type: ignore[arg-type]
        num_workers=workers,
        pin_memory=computer.device.type == "cuda",
        collate_fn=collate,
    )
    bar = tqdm(total=sum(t.size for t in tasks), unit="img", desc="extract", disable=bar_disabled() if progress is None else not progress, smoothing=0.1)
    split, waited, t_split = "", 0.0, time.perf_counter()
    try:
        with stream_pool(n_streams) as pool:
            t_wait = time.perf_counter()
            for batch, chunk in zip(batches, loader):
                check()  # an interrupt swallowed where it was raised stops the run here
                dt = time.perf_counter() - t_wait
                if batch[0][0] != split:  # a split's first batch
                    if split:
                        settle(keep=0)
                        _warn_if_input_bound(waited, time.perf_counter() - t_split, workers)
                    split, waited, t_split = batch[0][0], 0.0, time.perf_counter()
                    split_items = plan.data.splits[split]
                    it = iter(by_split[split])
                    task = next(it)
                    buf = new_buffer(task)
                    stage = Stage()
                elif chunk[0][0] >= task.stop:
                    task = next(it)
                    buf = new_buffer(task)
                waited += dt
                report_bad(split_items, chunk[0], chunk[2], chunk[3], cfg.strict)
                stage.add(chunk)
                # Forward batches are aligned to the unit start: an item's batch-mates never
                # depend on the loader batch size.
                unit_end = stage.end >= task.stop
                while stage.n >= spec.forward_batch or (unit_end and stage.n):
                    inflight.append(launch_chunk(computer, buf, split_items, stage.take(spec.forward_batch), passes[split], pool))
                    settle(keep=n_streams)
                t_wait = time.perf_counter()
            settle(keep=0)
            if split:
                _warn_if_input_bound(waited, time.perf_counter() - t_split, workers)
    finally:
        bar.close()
        writer.close()  # finishes every complete unit already submitted; partial units are dropped
        for b in filling:
            b.discard()  # (a unit the writer took has discarded its spill already)
    stats.bytes_written = writer.bytes_written
    return stats.finish()
