"""Feature stores: layout, Zarr and HDF5 backends, work units and resume."""

from diffprobe.store.layout import FeatureKey
from diffprobe.store.store import FeatureStore, create_store, open_store

__all__ = ["FeatureKey", "FeatureStore", "create_store", "open_store"]
