"""diffprobe: cache diffusion U-Net features once, probe them many times.

Public names are imported lazily (PEP 562) so that ``import diffprobe.cli`` and ``diffprobe --help``
do not pay for importing torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from diffprobe._version import __version__

_EXPORTS: dict[str, str] = {
    "Backbone": "diffprobe.extract.backbone",
    "BlockInfo": "diffprobe.extract.blocks",
    "NoiseSchedule": "diffprobe.extract.noise",
    "make_schedule": "diffprobe.extract.noise",
    "noise_like": "diffprobe.extract.noise",
    "q_sample": "diffprobe.extract.noise",
    "PRESETS": "diffprobe.extract.presets",
    "load_backbone": "diffprobe.extract.registry",
    "create_backbone": "diffprobe.extract.registry",
    "ExtractConfig": "diffprobe.extract.config",
    "FeatureKey": "diffprobe.store.layout",
    "FeatureStore": "diffprobe.store.store",
    "open_store": "diffprobe.store.store",
}
_SUBPACKAGES = ("extract", "store", "probes", "pipelines")

__all__ = ["__version__", "extract", *_EXPORTS]

if TYPE_CHECKING:
    from diffprobe.extract.backbone import Backbone
    from diffprobe.extract.config import ExtractConfig
    from diffprobe.store.layout import FeatureKey
    from diffprobe.store.store import FeatureStore, open_store
    from diffprobe.extract.blocks import BlockInfo
    from diffprobe.extract.noise import NoiseSchedule, make_schedule, noise_like, q_sample
    from diffprobe.extract.presets import PRESETS
    from diffprobe.extract.registry import create_backbone, load_backbone


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    if name in _SUBPACKAGES:  # `diffprobe.extract(config)` works: the extract package is callable
        return importlib.import_module(f"diffprobe.{name}")
    raise AttributeError(f"module 'diffprobe' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
