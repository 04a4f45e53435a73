"""Applying a saved probe to a split of another store: predictions, a CSV of them, and metrics."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from diffprobe.outputs import claim_output
from diffprobe.probes.io import TrainedProbe
from diffprobe.probes.metrics import classification_metrics
from diffprobe.store.reader import StoreReader


@dataclass(frozen=True)
class Predictions:
    """Predicted probabilities (N, K) for the decodable items of one split, with their ids and labels."""

    split: str
    ids: np.ndarray
    proba: np.ndarray
    labels: np.ndarray
    class_names: list[str]

    @property
    def predicted(self) -> np.ndarray:
        """(N,) predicted class index."""
        return self.proba.argmax(1)

    @property
    def n_labelled(self) -> int:
        return int((self.labels >= 0).sum())

    def metrics(self) -> dict[str, Any] | None:
        """Accuracy and friends on the labelled items; None when the split has no labels."""
        known = self.labels >= 0
        if not known.any():
            return None
        return classification_metrics(self.labels[known], self.proba[known], self.class_names)

    def write_csv(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """One row per item: id, predicted class name, true label (-1: none), then a probability per class.

        An existing ``path`` is refused (:class:`OutputExistsError`) unless ``overwrite``.
        """
        p = claim_output(path, overwrite=overwrite)
        p.parent.mkdir(parents=True, exist_ok=True)
        names = self.class_names
        with open(p, "w") as f:
            f.write(",".join(["id", "pred", "label", *names]) + "\n")
            for i, k, y, row in zip(self.ids, self.predicted, self.labels, self.proba):
                f.write(",".join([str(i), names[k], str(y), *(f"{v:.6g}" for v in row)]) + "\n")
        return p


def predict_split(trained: TrainedProbe, store: StoreReader, split: str) -> Predictions:
    """Run ``trained`` on every decodable item of ``split`` in ``store`` (the keys it was trained on)."""
    ids, proba = trained.predict_store(store, split)
    items = np.flatnonzero(np.asarray(store.valid(split), dtype=bool))
    labels = np.asarray(store.labels(split))[items]
    return Predictions(split, ids, proba, labels, list(trained.class_names))


def predict_data(trained: TrainedProbe, data: str | Path, split: str) -> Predictions:
    """Run an image probe (DifFeed) on every item of ``split`` of the images in ``data``."""
    from diffprobe.probes.difffeed_run import predict_images

    ids, proba, labels = predict_images(trained, data, split)
    return Predictions(split, ids, proba, labels, list(trained.class_names))
