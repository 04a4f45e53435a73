"""The extraction job: plan a run, prepare its store, run the pending units (here, on dask, or as
one static shard), and summarise what was done."""

from __future__ import annotations

from typing import TYPE_CHECKING

from diffprobe._lazy import lazy_exports

_EXPORTS: dict[str, str] = {
    "extract_features": "diffprobe.pipelines.extraction.job",
    "ExtractSummary": "diffprobe.pipelines.extraction.job",
    "ExtractPlan": "diffprobe.pipelines.extraction.plan",
    "make_plan": "diffprobe.pipelines.extraction.plan",
}
__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, __all__)

if TYPE_CHECKING:
    from diffprobe.pipelines.extraction.job import ExtractSummary, extract_features
    from diffprobe.pipelines.extraction.plan import ExtractPlan, make_plan
