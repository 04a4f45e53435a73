"""Extraction units as dask.distributed tasks (a LocalCluster, or an existing scheduler).

The coordinator (the client process) plans and creates the whole store first; each task then
decodes its unit's images, computes its features with a model loaded once per worker process, and
writes the unit's shards and done marker — nothing else. A task whose worker dies is rescheduled by
dask; running a unit twice writes the same bytes.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from diffprobe.device import resolve_device
from diffprobe.extract.compute import FeatureComputer
from diffprobe.extract.compute_spec import ComputeSpec
from diffprobe.extract.config import ExtractConfig
from diffprobe.extract.dataset import ImageDataset
from diffprobe.extract.sources.item import Item
from diffprobe.pipelines.extraction.local import RunStats, compute_chunk, noise_passes, report_bad
from diffprobe.pipelines.extraction.plan import ExtractPlan
from diffprobe.pipelines.extraction.worker_logs import QuietShutdown, closing_quietly
from diffprobe.progress import bar_disabled
from diffprobe.store.layout import FeatureKey
from diffprobe.store.progress import UnitBuffer, UnitTask, write_unit
from diffprobe.store.store import FeatureStore, open_store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a worker needs to run any unit of one extraction (sent with each task; small).

    Attributes:
        config: the run (model, checkpoint, flags, class label, store path, strictness).
        compute: the resolved compute spec; shapes: each key's per-item shape.
        device: where workers compute ("cuda" on GPU workers, each pinned to its own GPU).
        threads: CPU threads per worker process (0: torch's default).
    """

    config: ExtractConfig
    compute: ComputeSpec
    shapes: tuple[tuple[FeatureKey, tuple[int, ...]], ...]
    image_size: int
    device: str
    threads: int
    noise_shape: tuple[int, int, int] | None = None
    noisy: bool = True  # False for image models (timm): no noise is drawn

    @property
    def model_key(self) -> tuple:
        c = self.config
        return (c.model, c.checkpoint, c.flags, c.conditioning, self.device, self.compute)


# Per worker process: the loaded model and the open store, reused across units.
_COMPUTERS: dict[tuple, FeatureComputer] = {}
_STORES: dict[str, FeatureStore] = {}


def _computer(spec: WorkerSpec) -> FeatureComputer:
    if spec.model_key not in _COMPUTERS:
        if spec.threads:
            torch.set_num_threads(spec.threads)
        _COMPUTERS.clear()  # one model per worker process
        _COMPUTERS[spec.model_key] = FeatureComputer.for_config(spec.config, spec.compute, resolve_device(spec.device))
    return _COMPUTERS[spec.model_key]


def _store(path: str) -> FeatureStore:
    if path not in _STORES:
        _STORES[path] = open_store(path, mode="a")
    return _STORES[path]


def run_unit(spec: WorkerSpec, task: UnitTask, items: list[Item]) -> dict[str, Any]:
    """Decode, compute and write one unit (runs on a dask worker). ``items`` are the unit's items.

    Returns counts for the client's summary.
    """
    computer = _computer(spec)
    buf = UnitBuffer(task, dict(spec.shapes), spec.compute.out_dtype, _store(spec.config.out))
    passes = noise_passes([task], spec.compute) if spec.noisy else ()
    ds = ImageDataset(items, spec.image_size, passes, spec.compute.seed, spec.noise_shape, spec.compute.view_spec(spec.image_size))
    by_row = {task.start + j: it for j, it in enumerate(items)}  # global row → item
    m = spec.compute.forward_batch
    forwards = 0
    try:
        with ThreadPoolExecutor(max_workers=max(1, min(8, os.cpu_count() or 1))) as pool:
            for lo in range(0, task.size, m):  # forward batches aligned to the unit start
                rows = list(pool.map(ds.__getitem__, range(lo, min(lo + m, task.size))))
                idx = np.array([task.start + r[0] for r in rows])
                ok = np.array([r[2] for r in rows])
                errs = [r[3] for r in rows]
                report_bad(by_row, idx, ok, errs, spec.config.strict)
                x0 = torch.from_numpy(np.stack([r[1] for r in rows]))
                eps = torch.from_numpy(np.stack([r[4] for r in rows]))
                forwards += compute_chunk(computer, buf, by_row, (idx, x0, ok, errs, eps), passes)
        nbytes = write_unit(_store(spec.config.out), buf)
    finally:
        buf.discard()  # pieces put aside by a unit that failed part-way
    return {"split": task.split, "unit": task.unit, "items": task.size, "forwards": forwards,
            "failures": [(task.split, i, e) for i, e in buf.failures], "bytes": nbytes}  # fmt: skip


def _client(workers: int, scheduler: str | None, device: torch.device) -> tuple[Any, Any, dict[str, Any]]:
    """(client, cluster or None, submit kwargs). On CUDA, one worker per GPU, pinned, with a GPU resource."""
    from distributed import Client, LocalCluster

    if scheduler:
        return Client(scheduler), None, {}
    if device.type == "cuda":
        from distributed import Nanny, Scheduler, SpecCluster

        n_gpu = torch.cuda.device_count()
        if workers > n_gpu:
            log.warning("%d workers requested but %d GPUs are visible; starting %d", workers, n_gpu, n_gpu)
            workers = n_gpu
        specs = {
            f"gpu-{i}": {"cls": Nanny, "options": {"nthreads": 1, "resources": {"GPU": 1}, "env": {"CUDA_VISIBLE_DEVICES": str(i)}}}
            for i in range(workers)
        }
        cluster = SpecCluster(workers=specs, scheduler={"cls": Scheduler, "options": {"dashboard_address": ":0"}})
        return _quiet(Client(cluster)), cluster, {"resources": {"GPU": 1}}
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0")
    return _quiet(Client(cluster)), cluster, {}


def _quiet(client: Any) -> Any:
    """``client`` with the workers it started quiet about closing (not done on a scheduler we did not start)."""
    client.register_plugin(QuietShutdown())
    return client


def run_distributed(
    plan: ExtractPlan, tasks: list[UnitTask], spec: WorkerSpec, workers: int, scheduler: str | None,
    device: torch.device, progress: bool | None = None,
) -> RunStats:  # fmt: skip
    """Run ``tasks`` as dask tasks."""
    from distributed import as_completed

    client, cluster, submit_kw = _client(workers, scheduler, device)
    stats = RunStats()
    bar = tqdm(total=sum(t.size for t in tasks), unit="img", desc="extract", disable=bar_disabled() if progress is None else not progress)
    try:
        log.debug("dask dashboard: %s", client.dashboard_link)
        futures = [
            client.submit(run_unit, spec, t, plan.data.splits[t.split][t.start : t.stop], key=f"unit-{t.split}-{t.unit}-{plan.hash}", pure=False, **submit_kw)
            for t in tasks
        ]
        for fut in as_completed(futures):
            r = fut.result()
            stats.items += r["items"]
            stats.forwards += r["forwards"]
            stats.bytes_written += r["bytes"]
            stats.failures += [tuple(f) for f in r["failures"]]  # type: ignore[misc]
            stats.mark()
            bar.update(r["items"])
        stats.finish()
    finally:
        bar.close()
        with closing_quietly():  # the units are written (or the run has failed): its shutdown chatter is noise
            client.close()
            if cluster is not None:
                cluster.close()
    return stats
