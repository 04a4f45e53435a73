"""The extraction entry point: plan, check, lock the store, prepare it, run pending units, summarise."""

from __future__ import annotations

import contextlib
import logging
import os
import time
from pathlib import Path

import torch

from diffprobe.device import resolve_device
from diffprobe.errors import DataError, DiffprobeError, OutputExistsError, StoreError, StoreIOError
from diffprobe.extract.compute import FeatureComputer
from diffprobe.extract.config import ExtractConfig
from diffprobe.pipelines.extraction.interrupt import check, signals_as_interrupt
from diffprobe.pipelines.extraction.local import RunStats, loader_workers, run_tasks
from diffprobe.pipelines.extraction.plan import ExtractPlan, make_plan
from diffprobe.pipelines.extraction.prepare import (
    check_writers,
    identity_diff,
    pending_units,
    prepare_store,
    refused,
    todo_keys,
    unit_size_for,
)
from diffprobe.pipelines.extraction.safety import io_failure, publish_hdf5, working_store, writer_lock
from diffprobe.pipelines.extraction.summary import ExtractSummary
from diffprobe.pipelines.extraction.temporaries import remove_stale_spills
from diffprobe.store.backend import backend_for_path
from diffprobe.store.layout import plan_units
from diffprobe.store.ownership import check_replaceable, remove_store
from diffprobe.store.progress import UnitTask
from diffprobe.store.store import FeatureStore, open_store

log = logging.getLogger(__name__)


def extract_features(config: ExtractConfig, *, dry_run: bool = False, progress: bool | None = None) -> ExtractSummary:
    """Extract features for ``config`` into its store (the library entry point of ``diffprobe extract``).

    Re-running skips finished units; new timesteps, blocks or pools add only their arrays.
    Everything that can be checked is checked before anything is written. A run holds the store's
    writer lock (shards of one job excepted); an HDF5 store is written through a resumable working
    store and published atomically.

    Raises:
        StoreError: the store exists with another configuration (nothing is changed).
        StoreBusyError: another run is writing the store.  StoreIOError: the disk is full, a
            permission is missing, the folder vanished … (the message says which units are kept).
        ConfigError / DataError / CheckpointError: bad options, data or checkpoint.
    """
    device = resolve_device(config.device)
    plan = make_plan(config, device, cache_index=not dry_run)
    if dry_run:
        return _dry_run_summary(plan)
    return run_plan(plan, device, progress)


def run_plan(plan: ExtractPlan, device: torch.device, progress: bool | None = None, *, lock: bool = True) -> ExtractSummary:
    """Run a resolved plan into its store, under the writer lock, HDF5 through a working store (see
    :func:`extract_features`, which plans and calls this; a repair, which holds the lock already,
    calls it with a narrowed plan and ``lock=False``)."""
    config = plan.config
    out = Path(config.out).expanduser()
    backend = check_writers(plan)
    check_replaceable(out)  # a folder or file that is not a store is never written into or replaced
    with contextlib.ExitStack() as stack:
        if config.shard is None and lock:
            stack.enter_context(writer_lock(out))
        try:
            if not backend.atomic_publish:
                return _extract(plan, device, progress)
            return _extract_published(plan, device, progress, out)
        except DiffprobeError:
            raise
        except OSError as e:  # disk full, permissions, a vanished folder …: the finished units stay
            log.debug("I/O failure", exc_info=True)
            raise StoreIOError(io_failure(e, out)) from e


def _extract_published(plan: ExtractPlan, device: torch.device, progress: bool | None, out: Path) -> ExtractSummary:
    """An extraction into a backend that publishes atomically (HDF5): run into a Zarr working store
    (resumable, crash-safe), then publish."""
    from dataclasses import replace

    from diffprobe.store.maintenance import export_store

    work = working_store(out)
    if plan.config.overwrite and work.exists():
        remove_store(work, "--out (its working store)")
    if not work.exists() and out.exists() and not plan.config.overwrite:
        n_units, pending = count_pending(plan, out)
        if not pending:
            return ExtractSummary(str(out), plan.hash, n_units, 0, n_units, 0, 0)
        export_store(out, work)  # continue from the published file's finished units
    work_config = replace(plan.config, out=str(work), overwrite=plan.config.overwrite and not work.exists())
    summary = _extract(replace(plan, config=work_config), device, progress)
    publish_hdf5(work, out)
    summary.store = str(out)
    return summary


def _extract(plan: ExtractPlan, device: torch.device, progress: bool | None) -> ExtractSummary:
    config = plan.config
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
            with signals_as_interrupt():
                try:
                    if config.workers or config.scheduler:
                        result = _run_on_dask(plan, tasks, device, progress)
                        if config.shard is None:  # every writer of the store has stopped
                            remove_stale_spills(store.path)  # a killed worker's unit, redone by another
                    else:
                        computer = FeatureComputer.for_config(config, spec, device)
                        log.info(
                            "extracting %d units (%s%s, %s, forwards of %d images × %d passes) into %s",
                            len(tasks), where, device, spec.precision, spec.forward_batch, spec.fuse, store.path,
                        )  # fmt: skip
                        result = run_tasks(store, plan, tasks, computer, loader_workers(config, device), progress)
                    check()  # a signal whose interrupt was swallowed on the way (the last units may have finished)
                except KeyboardInterrupt:
                    log.warning(
                        "interrupted: finished units are saved; the units in flight were discarded. "
                        "Re-run the same command to resume."
                    )
                    raise
            summary.items, summary.forwards, summary.failures = result.items, result.forwards, result.failures
            summary.bytes_written, summary.steady_items_per_second = result.bytes_written, result.steady_items_per_second
            if result.items and len(result.failures) >= result.items:
                raise DataError(all_failed(store, tasks, result.failures, config.data))
        summary.seconds = time.perf_counter() - t0
    finally:
        store.close()
    for line in summary.lines():
        log.debug(line)
    return summary


def all_failed(store: FeatureStore, tasks: list[UnitTask], failures: list[tuple[str, str, str]], data: str) -> str:
    """When every item of a run failed to decode: mark its new units not done again (a re-run after
    the data is fixed computes them) and say so, with the first errors."""
    for t in tasks:
        if not t.done_keys:  # units that held nothing before this run
            store.backend.delete_marker(t.split, t.unit)
    store.backend.flush()
    shown = "; ".join(f"[{s}] {i}: {e}" for s, i, e in failures[:3])
    return (f"every one of the {len(failures)} items of this run failed to decode, so nothing was extracted: {shown}"
            f"{' …' if len(failures) > 3 else ''}. Check the images of {data} (or the loader: a missing codec?), then re-run "
            "the same command: the units stay not done until their images decode")  # fmt: skip


def _run_on_dask(plan: ExtractPlan, tasks: list[UnitTask], device: torch.device, progress: bool | None) -> RunStats:
    from diffprobe.pipelines.extraction.cluster import WorkerSpec, run_distributed

    cfg = plan.config
    workers = cfg.workers
    threads = max(1, (os.cpu_count() or 1) // workers) if workers and device.type == "cpu" else 0
    wspec = WorkerSpec(
        config=cfg, compute=plan.compute, shapes=tuple(plan.shapes.items()), image_size=plan.model.image_size, noise_shape=plan.model.noise_shape,
        noisy=plan.model.noised,
        device="cuda" if device.type == "cuda" and workers else str(device), threads=threads,
    )
    where = f"scheduler {cfg.scheduler}" if cfg.scheduler else f"{workers} local dask workers"
    log.info("extracting %d units on %s into %s", len(tasks), where, cfg.out)
    return run_distributed(plan, tasks, wspec, workers, cfg.scheduler, device, progress)


def _dry_run_summary(plan: ExtractPlan) -> ExtractSummary:
    """What a run would do, without writing anything (an existing store is only read)."""
    out = Path(plan.config.out).expanduser()
    work = working_store(out)
    if backend_for_path(out).atomic_publish and work.exists() and not plan.config.overwrite:
        out = work  # an interrupted run of a published store (HDF5): its working store says what is left
    try:
        check_replaceable(Path(plan.config.out).expanduser())
        n_units, pending = count_pending(plan, out)
    except (StoreError, OutputExistsError) as e:
        raise StoreError(f"would be refused: {e}") from None
    from diffprobe.pipelines.extraction.memory import estimate_memory

    unit = max((unit_size_for(plan, len(items)) for items in plan.data.splits.values()), default=1)
    mem = estimate_memory(plan, unit)
    memory = {"device_peak": mem.device_peak, "resident": mem.resident, "transient": mem.transient, "activations": mem.activations,
              "host_unit_buffers": mem.unit_buffers, "unit_spill": mem.spill, "units_at_once": mem.units, "lines": mem.lines()}  # fmt: skip
    return ExtractSummary(str(plan.config.out), plan.hash, n_units, pending, n_units - pending, 0, 0, dry_run=True,
                          plan={**plan.summary(), "peak_memory": memory})  # fmt: skip


def count_pending(plan: ExtractPlan, out: Path) -> tuple[int, int]:
    """(units, pending units) of ``plan`` against the store at ``out`` (if any; only read).

    Raises:
        StoreError: the store was made with another configuration.
    """
    n_units = pending = 0
    existing = None
    if out.exists() and not plan.config.overwrite:
        existing = open_store(out)
        diffs = identity_diff(existing.attrs.get("identity", {}), plan.identity)
        if diffs:
            existing.close()
            raise StoreError(f"store {plan.config.out} {refused(diffs)}")
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
    return n_units, pending
