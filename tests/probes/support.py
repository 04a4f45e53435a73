"""Shared data for the probe, sweep and CLI tests (holds no tests).

``real_store()`` extracts real features once per test session from the bundled checkpoint: 30 train
and 20 val Fashion-MNIST images per class at t = 90, blocks 10 (middle) and 13, pools 1, 2, 4.
``blobs_store()`` is an in-memory store of Gaussian class blobs with several (t, block, pool) keys.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

import numpy as np

from tests.helpers import FMNIST_CKPT, make_manifest

PER_CLASS = {"train": 30, "val": 20}
GOOD_KEY = "t0090_b13_p2"


@functools.cache
def workdir() -> Path:
    d = Path(tempfile.mkdtemp(prefix="diffprobe-probe-tests-"))
    atexit.register(shutil.rmtree, d, ignore_errors=True)
    return d


@functools.cache
def real_store() -> Path:
    """Path of a Zarr store of real features (500 images; about 20 s on 2 CPU cores)."""
    import diffprobe

    manifest = make_manifest(workdir() / "fmnist_small.csv", PER_CLASS["train"], PER_CLASS["val"])
    out = workdir() / "real.zarr"
    diffprobe.extract_features(
        diffprobe.ExtractConfig(
            data=str(manifest), model="adm-32-fmnist", checkpoint=str(FMNIST_CKPT),
            timesteps=(90,), blocks=(10, 13), pools=(1, 2, 4), out=str(out), forward_batch=100,
        )
    )
    return out


@functools.cache
def raw_arrays(key: str = GOOD_KEY) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(X_train, y_train, X_val, y_val) of one real key as stored (float32, flattened to (N, D))."""
    from diffprobe.store import open_store

    with open_store(real_store()) as s:
        Xtr = s.read("train", key).astype(np.float32)
        Xva = s.read("val", key).astype(np.float32)
        ytr, yva = s.labels("train"), s.labels("val")
    return Xtr.reshape(Xtr.shape[0], -1), ytr, Xva.reshape(Xva.shape[0], -1), yva


@functools.cache
def real_arrays(key: str = GOOD_KEY) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(X_train, y_train, X_val, y_val) of one real key, standardised with train statistics."""
    Xtr, ytr, Xva, yva = raw_arrays(key)
    mean, std = Xtr.mean(0), Xtr.std(0) + 1e-6
    return (Xtr - mean) / std, ytr, (Xva - mean) / std, yva


def blobs(n_per_class: int = 30, n_classes: int = 4, shape: tuple[int, ...] = (8, 2, 2), sep: float = 2.0, seed: int = 0):
    """Gaussian class blobs: X (N, *shape) float32, y (N,) int64; the centres depend on the shape only."""
    d = int(np.prod(shape))
    centres = np.random.default_rng(d).normal(size=(n_classes, d)) * sep * 3 / np.sqrt(d)
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(n_classes), n_per_class)
    X = centres[y] + rng.normal(size=(len(y), d))
    return X.reshape(len(y), *shape).astype(np.float32), y.astype(np.int64)


def blobs_store(ts=(10, 90), blocks=(4, 7), pools=(1, 2, None), n_per_class: int = 20, draws: int = 1):
    """A MemoryStore with train/val splits and one array per (t, block, pool); blocks at t=90 separate best."""
    from diffprobe.store.memory import MemoryStore

    arrays: dict[str, dict[str, np.ndarray]] = {"train": {}, "val": {}}
    labels = {}
    for i, split in enumerate(("train", "val")):
        for t in ts:
            for b in blocks:
                sep = 0.6 + 1.4 * (t == 90) + 0.4 * (b == blocks[-1])
                for p in pools:
                    side = 4 if p is None else p
                    X, y = blobs(n_per_class, 4, (draws, 6, side, side) if draws > 1 else (6, side, side), sep, seed=100 * i + 7)
                    name = f"t{t:04d}_b{b:02d}_{'full' if p is None else f'p{p}'}"
                    arrays[split][name] = X
                    labels[split] = y
    return MemoryStore.from_arrays(arrays, labels, [f"class{c}" for c in range(4)])
