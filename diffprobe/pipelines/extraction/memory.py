"""The peak memory of an extraction, estimated before anything is loaded (``extract --dry-run``).

Device: the weights that stay loaded while extracting (denoiser, autoencoder — counted on the meta
device at the dtype they load in), plus the activations of one forward without gradients up to the
deepest requested block — per row: the U-Net's skip connections (every input block's output up to
there), the captured maps of the requested blocks, and :data:`ACTIVATION_FACTOR` × the largest
block's map (its input, output and temporaries); attention scores are not counted (CUDA's fused
attention never holds them), times the forwards a CPU runs at once (:func:`~diffprobe.threads.streams`)
— against the text encoders, which are loaded once before, one at a time, and freed (their files'
sizes). Host: the unit buffers (every key of a unit, until its shards are written; a piece of
:data:`~diffprobe.store.layout.MAX_UNIT_BYTES` of a larger unit, whose full pieces wait on the
store's disk until its end: :mod:`~diffprobe.store.spill`), times the units a process holds at
once (the one being filled, :data:`~diffprobe.store.progress.WRITE_QUEUE_DEPTH` waiting and one
per writer thread; one per dask worker, which writes its unit before it takes the next).
An estimate to decide between bf16 weights, a smaller ``--forward-batch`` or another card — not a bound.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from diffprobe.device import compute_dtype
from diffprobe.extract.registry import get_family
from diffprobe.pipelines.extraction.plan import ExtractPlan
from diffprobe.pipelines.extraction.streams import forward_streams
from diffprobe.sizes import format_bytes
from diffprobe.store.backend import Backend, backend_for_path
from diffprobe.store.layout import MAX_UNIT_BYTES
from diffprobe.store.progress import WRITE_QUEUE_DEPTH, piece_rows, writer_threads

#: Live maps of the largest block during a forward: its input, its output, temporaries inside it.
ACTIVATION_FACTOR = 3


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes: ``resident`` and ``transient`` weights by part, the ``activations`` of the ``forwards``
    computed at once, the host's ``unit_buffers`` of one unit, and the ``spill`` a unit held a piece
    at a time puts aside on the store's disk until its end (0: units are held whole, or the backend
    writes pieces in place); ``units`` such units are held at once on one machine."""

    resident: dict[str, int]
    transient: dict[str, int]
    activations: int
    unit_buffers: int
    forwards: int = 1
    spill: int = 0
    units: int = 1
    #: how the ``units`` held at once come about, for the dry run's line
    units_why: str = ""

    @property
    def device_peak(self) -> int:
        """The larger of the extraction (resident weights + activations) and the largest text encoder."""
        return max(sum(self.resident.values()) + self.activations, max(self.transient.values(), default=0))

    def lines(self) -> list[str]:
        parts = ", ".join(f"{k} {format_bytes(v)}" for k, v in self.resident.items())
        out = [f"  peak memory (estimate): device {format_bytes(self.device_peak)} = weights ({parts}) + activations "
               f"{format_bytes(self.activations)}{f' ({self.forwards} forwards at once)' if self.forwards > 1 else ''}; "
               f"host unit buffers {format_bytes(self.units * self.unit_buffers)} = {self.units} × {format_bytes(self.unit_buffers)} ({self.units_why})"]  # fmt: skip
        if self.spill:
            out.append(f"  a unit's rows of every key exceed {format_bytes(MAX_UNIT_BYTES)}: it is filled a piece of "
                       f"{format_bytes(self.unit_buffers)} at a time, the pieces before its last put aside in the store "
                       f"until its end (up to {format_bytes(self.spill)} of temporary disk per unit, {format_bytes(self.units * self.spill)} "
                       f"for {self.units} units at once; each shard is still written once)")  # fmt: skip
        if self.transient:
            enc = ", ".join(f"{k} {format_bytes(v)}" for k, v in self.transient.items())
            out.append(f"  text encoders, loaded once before extraction and freed one at a time: {enc}")
        return out


def estimate_memory(plan: ExtractPlan, unit_size: int) -> MemoryEstimate:
    """The peak memory of running ``plan`` with work units of ``unit_size`` items."""
    cfg = plan.config
    w = get_family(plan.model.family).weights(plan.model, plan.checkpoint, cfg.conditioning, torch.float32)
    deepest = max(plan.blocks)
    size = lambda b: b.channels * b.height * b.width
    run = plan.model.blocks[:deepest]
    skips = sum(size(b) for b in run if b.stage == "input")
    elements = skips + sum(size(b) for b in plan.blocks.values()) + ACTIVATION_FACTOR * max(size(b) for b in run)
    rows = plan.compute.forward_batch * plan.compute.fuse
    forwards = forward_streams(plan.device_type, plan.compute.compile)
    activations = forwards * rows * elements * compute_dtype(plan.compute.precision).itemsize
    unit = unit_size * plan.item_bytes()
    held = piece_rows(unit_size, plan.item_bytes()) * plan.item_bytes()
    backend = backend_for_path(cfg.out)
    units, why = _units_at_once(cfg.workers, cfg.scheduler is not None, backend)
    return MemoryEstimate(w.resident, w.transient, activations, held, forwards, unit - held if backend.spills_pieces else 0, units, why)


def _units_at_once(workers: int, scheduler: bool, backend: type[Backend]) -> tuple[int, str]:
    """Units held at once on one machine, and why: a dask worker holds one; this process, its writer's."""
    if scheduler:
        return 1, "per dask worker"
    if workers:
        return workers, f"one per dask worker, {workers} workers"
    threads = writer_threads(backend)  # BackgroundWriter: its waiting units and one per thread
    return 1 + WRITE_QUEUE_DEPTH + threads, f"1 being filled, {WRITE_QUEUE_DEPTH} waiting, {threads} being written"
