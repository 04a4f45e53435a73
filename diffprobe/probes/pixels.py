"""The raw-pixel baseline of a store: its items' images, preprocessed as extraction feeds them, as a
:class:`~diffprobe.store.memory.MemoryStore` that every probe reads like features."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from diffprobe.probes.errors import ProbeError
from diffprobe.store.coverage import coverage
from diffprobe.store.memory import MemorySplit, MemoryStore
from diffprobe.store.store import FeatureStore

log = logging.getLogger(__name__)


def pixel_store(store: FeatureStore, splits: list[str] | None = None) -> MemoryStore:
    """A :class:`~diffprobe.store.memory.MemoryStore` of the raw pixels (3, S, S) in [-1, 1] of the
    images listed by ``store.paths(split)``, preprocessed as extraction does (S = the model's input size)."""
    from diffprobe.extract.registry import model_spec
    from diffprobe.extract.sources.decode import DECODE_ERRORS, load_image

    cfg = store.config
    size = model_spec(cfg.get("model", "adm"), cfg.get("flags") or {}, cfg.get("checkpoint")).image_size
    data = {}
    for split in splits or store.splits:
        paths = [str(p) for p in store.paths(split)]
        valid = np.asarray(store.valid(split), dtype=bool).copy()
        valid[np.setdiff1d(np.arange(len(valid)), coverage(store, split, store.keys(split)).rows)] = False  # unfinished units
        pix = np.full((len(paths), 3, size, size), np.nan, dtype=np.float32)
        for i, p in enumerate(paths):
            if not valid[i]:
                continue
            try:
                pix[i] = load_image(_locate(p, store), size)
            except DECODE_ERRORS as e:
                log.warning("pixel baseline: skipping %s (%s)", p, e)
                valid[i] = False
        data[split] = MemorySplit({"pixels": pix}, store.labels(split), store.ids(split), np.asarray(paths), valid)
    return MemoryStore(data, store.class_names, store.config_hash, path=store.path)


def _locate(path: str, store: FeatureStore) -> Path:
    p = Path(path)
    for candidate in (p, Path(store.path).parent / p):
        if candidate.is_file():
            return candidate
    raise ProbeError(f"expected the source image {path!r} to exist (relative paths are read from the working directory)")


