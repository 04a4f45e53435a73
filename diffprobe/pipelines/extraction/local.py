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
from diffprobe.pipelines.extraction.plan import ExtractPlan
from diffprobe.pipelines.extraction.streams import forward_streams, stream_pool
from diffprobe.progress import bar_disabled
from diffprobe.store.progress import BackgroundWriter, UnitBuffer, UnitTask
from diffprobe.store.store import FeatureStore

log = logging.getLogger(__name__)

#: (global item indices (B,), clean images (B, 3, S, S) or (B, V, 3, S, S), decoded ok (B,), decode
#:  errors, noise (B, P, *noise_shape) for the run's P (view, t, draw) passes)
Chunk = tuple[np.ndarray, torch.Tensor, np.ndarray, list[str], torch.Tensor]


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


class Stage:
    """Loaded rows waiting for a full forward batch (never more than one unit's worth)."""

    def __init__(self) -> None:
        self.parts: list[Chunk] = []
        self.n = 0
        self.end = 0

    def add(self, chunk: Chunk) -> None:
        self.parts.append(chunk)
        self.n += len(chunk[0])
        self.end = int(chunk[0][-1]) + 1

    def take(self, m: int) -> Chunk:
        if len(self.parts) == 1:  # the common case: slice, keeping pinned loader memory (no copy)
            idx, x0, ok, err, eps = self.parts[0]
            k = min(m, len(idx))
            self.parts = [(idx[k:], x0[k:], ok[k:], err[k:], eps[k:])] if k < len(idx) else []
            self.n -= k
            return idx[:k], x0[:k], ok[:k], err[:k], eps[:k]
        idx = np.concatenate([p[0] for p in self.parts])
        x0 = torch.cat([p[1] for p in self.parts])
        ok = np.concatenate([p[2] for p in self.parts])
        err = [e for p in self.parts for e in p[3]]
        eps = torch.cat([p[4] for p in self.parts])
        k = min(m, len(idx))
        self.parts = [(idx[k:], x0[k:], ok[k:], err[k:], eps[k:])] if k < len(idx) else []
        self.n -= k
        return idx[:k], x0[:k], ok[:k], err[:k], eps[:k]


def collate(batch: list[tuple[int, np.ndarray, bool, str, np.ndarray]]) -> Chunk:
    idx = np.array([b[0] for b in batch])
    x = torch.from_numpy(np.stack([b[1] for b in batch]))
    ok = np.array([b[2] for b in batch])
    eps = torch.from_numpy(np.stack([b[4] for b in batch]))
    return idx, x, ok, [b[3] for b in batch], eps


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


def batches_of(tasks: list[UnitTask], batch_size: int) -> list[list[int]]:
    """Loader index batches that never straddle two units."""
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

    bar = tqdm(total=sum(t.size for t in tasks), unit="img", desc="extract", disable=bar_disabled() if progress is None else not progress, smoothing=0.1)
    try:
        with stream_pool(n_streams) as pool:
            for split in dict.fromkeys(t.split for t in tasks):
                split_tasks = [t for t in tasks if t.split == split]
                split_items: list[Item] = plan.data.splits[split]
                passes = noise_passes(split_tasks, spec) if plan.model.noised else ()
                dataset = ImageDataset(split_items, plan.model.image_size, passes, spec.seed, plan.model.noise_shape,
                                       spec.view_spec(plan.model.image_size))  # fmt: skip
                loader: DataLoader = DataLoader(
                    dataset,  # type: ignore[arg-type]
                    batch_sampler=batches_of(split_tasks, cfg.batch_size),
                    num_workers=workers,
                    pin_memory=computer.device.type == "cuda",
                    collate_fn=collate,
                )
                it = iter(split_tasks)
                task = next(it)
                buf = UnitBuffer(task, plan.shapes, spec.out_dtype, store)
                filling[:] = [*(b for b in filling if not b.complete), buf]
                stage = Stage()
                t_split = time.perf_counter()
                waited = 0.0
                t_wait = time.perf_counter()
                for chunk in loader:
                    check()  # an interrupt swallowed where it was raised stops the run here
                    waited += time.perf_counter() - t_wait
                    if chunk[0][0] >= task.stop:
                        task = next(it)
                        buf = UnitBuffer(task, plan.shapes, spec.out_dtype, store)
                        filling[:] = [*(b for b in filling if not b.complete), buf]  # (complete: the writer's)
                    report_bad(split_items, chunk[0], chunk[2], chunk[3], cfg.strict)
                    stage.add(chunk)
                    # Forward batches are aligned to the unit start: an item's batch-mates never
                    # depend on the loader batch size.
                    unit_end = stage.end >= task.stop
                    while stage.n >= spec.forward_batch or (unit_end and stage.n):
                        inflight.append(launch_chunk(computer, buf, split_items, stage.take(spec.forward_batch), passes, pool))
                        settle(keep=n_streams)
                    t_wait = time.perf_counter()
                settle(keep=0)
                _warn_if_input_bound(waited, time.perf_counter() - t_split, workers)
    finally:
        bar.close()
        writer.close()  # finishes every complete unit already submitted; partial units are dropped
        for b in filling:
            b.discard()  # (a unit the writer took has discarded its spill already)
    stats.bytes_written = writer.bytes_written
    return stats.finish()
