"""Applying a saved probe to a split of another store: predictions, a CSV of them, and metrics."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from diffprobe.outputs import claim_output
from diffprobe.probes.data import load_features
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
    #: whether every item of the split was extracted (False: only the finished ones, ``allow_incomplete``)
    complete: bool = True

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
        """One row per item: id, true label and predicted label (class names in both; the label is
        empty for an unlabelled item), then a probability per class (columns ``p_<class>``); LF line endings.

        An existing ``path`` is refused (:class:`OutputExistsError`) unless ``overwrite``.
        """
        import csv

        p = claim_output(path, overwrite=overwrite)
        p.parent.mkdir(parents=True, exist_ok=True)
        names = self.class_names
        with open(p, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(["id", "label", "pred", *(f"p_{n}" for n in names)])
            for i, k, y, row in zip(self.ids, self.predicted, self.labels, self.proba):
                w.writerow([str(i), names[y] if 0 <= y < len(names) else "", names[k], *(f"{v:.6g}" for v in row)])
        return p


def predict_split(trained: TrainedProbe, store: StoreReader, split: str, *, allow_incomplete: bool = False) -> Predictions:
    """Run ``trained`` on every decodable item of ``split`` in ``store`` (the keys it was trained on).

    Raises:
        StoreIncompleteError: the split's extraction is not finished, unless ``allow_incomplete``
            (then only its finished items are predicted; ``complete`` says so).
    """
    feats = load_features(store, split, [k.name for k in trained.keys], first_view=True, allow_incomplete=allow_incomplete)
    items = np.flatnonzero(feats.valid)
    return Predictions(split, feats.ids[items], trained.predict_proba(feats, items), feats.y[items], list(trained.class_names),
                       feats.complete)  # fmt: skip

