"""``DenseProbe``: a dense head with the scikit-learn estimator contract, like the other probes.

``fit(X, y)`` takes the maps X — one (N, C, h, w) array or a list of them (numpy, or anything
sliceable along rows: dask, zarr, h5py) — and the masks y (N, S, S); it streams them in windows of
``max_memory`` (so X may be larger than memory), as :func:`~diffprobe.probes.dense.run.dense_probe`
does from a store. ``predict`` gives (N, S, S) class maps, ``score`` the mIoU.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from diffprobe.probes.base import rng_seed
from diffprobe.probes.dense.heads import HEADS, DenseHead
from diffprobe.probes.dense.metrics import segmentation_metrics
from diffprobe.probes.dense.source import ArraySource, Source
from diffprobe.probes.dense.train import evaluate, fit_head
from diffprobe.probes.optim import TrainConfig
from diffprobe.store.layout import IGNORE_INDEX


class DenseProbe(BaseEstimator):
    """A segmentation head on cached feature maps (see :mod:`diffprobe.probes.dense.heads`).

    Args: head (a name in :data:`~diffprobe.probes.dense.heads.HEADS`), members (mlp's ensemble), the
    training options of :class:`~diffprobe.probes.training.TrainConfig` (``momentum`` applies to
    ``sgd``; the schedule steps once per minibatch) and ``max_memory``, the bytes of items held at once.
    """

    def __init__(self, head: str = "linear", members: int = 1, epochs: int = 30, batch_size: int = 32, lr: float = 1e-2,
                 momentum: float = 0.9, weight_decay: float = 1e-4, optimizer: str = "adamw", schedule: str = "cosine",
                 random_state: int | None = 0, device: str = "cpu", max_memory: int = 512 << 20) -> None:  # fmt: skip
        self.head = head
        self.members = members
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.optimizer = optimizer
        self.schedule = schedule
        self.random_state = random_state
        self.device = device
        self.max_memory = max_memory

    @property
    def training(self) -> TrainConfig:
        """The head's :class:`TrainConfig`."""
        return TrainConfig(optimizer=self.optimizer, lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay,
                           epochs=self.epochs, batch_size=self.batch_size, schedule=self.schedule, device=str(self.device),
                           seed=rng_seed(self.random_state))  # fmt: skip

    def fit(self, X: Any, y: Any) -> DenseProbe:
        """Train on maps X ((N, C, h, w), or a list of them) and masks y ((N, S, S); 255 ignored)."""
        source = ArraySource.of(X, y)
        top = max((int(np.max(m, initial=0)) for m in _mask_windows(y)), default=0)
        return self.fit_source(source, top + 1)

    def fit_source(self, source: Source, n_classes: int) -> DenseProbe:
        """Train on a prepared source (a store's :class:`DenseSource`, or an :class:`ArraySource`)."""
        make = HEADS.get(self.head)
        torch.manual_seed(rng_seed(self.random_state))  # the head's initialisation
        net: DenseHead = make(source.channels(), n_classes, max(source.sizes()), members=self.members)
        self.losses_ = fit_head(net, source, self.training, self.max_memory)
        self.head_, self.n_classes_, self.mask_size_ = net, n_classes, source.mask_size
        return self

    @torch.no_grad()
    def predict(self, X: Any) -> np.ndarray:
        """(N, S, S) int64 class maps at the training masks' size."""
        check_is_fitted(self, "head_")
        arrays = list(X) if isinstance(X, (list, tuple)) else [X]
        n = int(arrays[0].shape[0])
        source = ArraySource(arrays, np.zeros((n, self.mask_size_, self.mask_size_), np.uint8), np.arange(n))
        self.head_.to(self.device).eval()
        out = [self.head_([m.to(self.device) for m in maps], self.mask_size_).argmax(1).cpu().numpy()
               for maps, _ in source.batches(self.batch_size, None, self.max_memory)]  # fmt: skip
        return np.concatenate(out) if out else np.zeros((0, self.mask_size_, self.mask_size_), np.int64)

    def score(self, X: Any, y: Any) -> float:
        """mIoU on (X, y)."""
        return float(self.evaluate(ArraySource.of(X, y))["miou"])

    def evaluate(self, source: Source, names: list[str] | None = None) -> dict[str, Any]:
        """mIoU, per-class IoU, pixel accuracy and the confusion matrix over ``source``."""
        check_is_fitted(self, "head_")
        conf = evaluate(self.head_, source, self.n_classes_, self.device, max_memory=self.max_memory)
        names = names if names and len(names) == self.n_classes_ else [str(i) for i in range(self.n_classes_)]
        return {**segmentation_metrics(conf, names), "confusion": conf.tolist()}


def _mask_windows(y: Any, rows: int = 1024) -> Any:
    for s in range(0, len(y), rows):
        m = np.asarray(y[s : s + rows])
        yield m[m != IGNORE_INDEX]
