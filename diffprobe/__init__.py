"""diffprobe: cache diffusion U-Net features once, probe them many times.

Public names are imported lazily (PEP 562) so that ``import diffprobe.cli`` and ``diffprobe --help``
do not pay for importing torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from diffprobe._lazy import lazy_exports
from diffprobe._version import __version__

_EXPORTS: dict[str, str] = {
    "Backbone": "diffprobe.extract.backbone",
    "BlockInfo": "diffprobe.blocks",
    "NoiseSchedule": "diffprobe.extract.noise",
    "make_schedule": "diffprobe.extract.noise",
    "noise_like": "diffprobe.extract.noise",
    "q_sample": "diffprobe.extract.noise",
    "PRESETS": "diffprobe.extract.registry",
    "load_backbone": "diffprobe.extract.registry",
    "create_backbone": "diffprobe.extract.registry",
    "model_spec": "diffprobe.extract.registry",
    "ModelSpec": "diffprobe.extract.spec",
    "Conditioning": "diffprobe.extract.spec",
    "ExtractConfig": "diffprobe.extract.config",
    "extract_features": "diffprobe.pipelines.extraction.job",
    "FeatureKey": "diffprobe.store.layout",
    "ArrayLayout": "diffprobe.store.arrays",
    "KeySelection": "diffprobe.store.select",
    "resolve_selection": "diffprobe.store.select",
    "Registry": "diffprobe.registry",
    "StoreReader": "diffprobe.store.reader",
    "FeatureStore": "diffprobe.store.store",
    "open_store": "diffprobe.store.store",
}

__all__ = ["__version__", *_EXPORTS]
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, __all__)

if TYPE_CHECKING:
    from diffprobe.blocks import BlockInfo
    from diffprobe.extract.backbone import Backbone
    from diffprobe.extract.config import ExtractConfig
    from diffprobe.extract.noise import NoiseSchedule, make_schedule, noise_like, q_sample
    from diffprobe.extract.registry import PRESETS, create_backbone, load_backbone, model_spec
    from diffprobe.extract.spec import Conditioning, ModelSpec
    from diffprobe.pipelines.extraction.job import extract_features
    from diffprobe.registry import Registry
    from diffprobe.store.arrays import ArrayLayout
    from diffprobe.store.layout import FeatureKey
    from diffprobe.store.reader import StoreReader
    from diffprobe.store.select import KeySelection, resolve_selection
    from diffprobe.store.store import FeatureStore, open_store
