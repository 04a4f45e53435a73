"""The sweep job: one probe per (t, block, pool) key of a store, a tidy table, the best keys and the
paper-style plots."""

from __future__ import annotations

from typing import TYPE_CHECKING

from diffprobe._lazy import lazy_exports

_EXPORTS: dict[str, str] = {
    "SweepConfig": "diffprobe.pipelines.sweep.run",
    "SweepResult": "diffprobe.pipelines.sweep.run",
    "run_sweep": "diffprobe.pipelines.sweep.run",
    "select_keys": "diffprobe.pipelines.sweep.run",
    "best_keys": "diffprobe.pipelines.sweep.run",
    "plot_sweep": "diffprobe.pipelines.sweep.plots",
}
__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, __all__)

if TYPE_CHECKING:
    from diffprobe.pipelines.sweep.plots import plot_sweep
    from diffprobe.pipelines.sweep.run import SweepConfig, SweepResult, best_keys, run_sweep, select_keys
