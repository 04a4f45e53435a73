"""Feature stores: layout, the reading contract, Zarr and HDF5 backends, work units and resume.

Names are imported lazily (PEP 562) so that the light modules (``layout``) load without zarr.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from diffprobe._lazy import lazy_exports

_EXPORTS: dict[str, str] = {
    "FeatureKey": "diffprobe.store.layout",
    "ArrayLayout": "diffprobe.store.arrays",
    "KeySelection": "diffprobe.store.select",
    "KeyInfo": "diffprobe.store.select",
    "resolve_selection": "diffprobe.store.select",
    "StoreReader": "diffprobe.store.reader",
    "FeatureStore": "diffprobe.store.store",
    "MemoryStore": "diffprobe.store.memory",
    "create_store": "diffprobe.store.store",
    "open_store": "diffprobe.store.store",
}

__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, __all__)

if TYPE_CHECKING:
    from diffprobe.store.arrays import ArrayLayout
    from diffprobe.store.layout import FeatureKey
    from diffprobe.store.memory import MemoryStore
    from diffprobe.store.reader import StoreReader
    from diffprobe.store.select import KeyInfo, KeySelection, resolve_selection
    from diffprobe.store.store import FeatureStore, create_store, open_store
