"""What the run's loader yields: index batches that never straddle two units, over every split at once
(one set of loader worker processes for the whole run), collated into chunks, staged into forward
batches aligned to the unit start."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from diffprobe.extract.dataset import ImageDataset
from diffprobe.store.progress import UnitTask

#: (global item indices (B,), clean images (B, 3, S, S) or (B, V, 3, S, S), decoded ok (B,), decode
#:  errors, noise (B, P, *noise_shape) for the run's P (view, t, draw) passes)
Chunk = tuple[np.ndarray, torch.Tensor, np.ndarray, list[str], torch.Tensor]


class SplitsDataset:
    """Every split's :class:`~diffprobe.extract.dataset.ImageDataset` behind one loader, indexed by
    (split, item index): the loader's workers start once, before any unit is done, instead of once
    per split (a signal can then never arrive while they fork between units)."""

    def __init__(self, datasets: dict[str, ImageDataset]) -> None:
        self.datasets = datasets

    def __len__(self) -> int:
        return sum(len(d) for d in self.datasets.values())

    def __getitem__(self, key: tuple[str, int]) -> tuple[int, np.ndarray, bool, str, np.ndarray]:
        split, i = key
        return self.datasets[split][i]


def batches_of(tasks: list[UnitTask], batch_size: int) -> list[list[int]]:
    """Loader index batches that never straddle two units."""
    out = []
    for t in tasks:
        out += [list(range(s, min(s + batch_size, t.stop))) for s in range(t.start, t.stop, batch_size)]
    return out


def run_batches(by_split: Mapping[str, list[UnitTask]], batch_size: int) -> list[list[tuple[str, int]]]:
    """The whole run's loader batches of (split, item index), split after split (each split's tasks in order)."""
    return [[(s, i) for i in b] for s, tasks in by_split.items() for b in batches_of(tasks, batch_size)]


class Stage:
    """Loaded rows waiting for a full forward batch (never more than one unit's worth)."""

    def __init__(self) -> None:
        self.parts: list[Chunk] = []
        self.n = 0
        self.end = 0

    def add(self, chunk: Chunk) -> None:
        self.parts.append(chunk)
        self.n += len(chunk[0])
        self.end = int(chunk[0][-1]) + 1

    def take(self, m: int) -> Chunk:
        if len(self.parts) > 1:  # joined; one part (the common case) is sliced, keeping pinned loader memory
            ps = self.parts
            self.parts = [(np.concatenate([p[0] for p in ps]), torch.cat([p[1] for p in ps]), np.concatenate([p[2] for p in ps]),
                           [e for p in ps for e in p[3]], torch.cat([p[4] for p in ps]))]  # fmt: skip
        idx, x0, ok, err, eps = self.parts[0]
        k = min(m, len(idx))
        self.parts = [(idx[k:], x0[k:], ok[k:], err[k:], eps[k:])] if k < len(idx) else []
        self.n -= k
        return idx[:k], x0[:k], ok[:k], err[:k], eps[:k]


def collate(batch: list[tuple[int, np.ndarray, bool, str, np.ndarray]]) -> Chunk:
    idx = np.array([b[0] for b in batch])
    x = torch.from_numpy(np.stack([b[1] for b in batch]))
    ok = np.array([b[2] for b in batch])
    eps = torch.from_numpy(np.stack([b[4] for b in batch]))
    return idx, x, ok, [b[3] for b in batch], eps
