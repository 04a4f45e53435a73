"""Classification metrics from predicted probabilities: top-1, top-k, per-class accuracy, confusion.

Pure numpy; ``proba`` columns are the dataset's classes 0..K-1 (see :func:`expand_proba` for a probe
that saw only some of them in training).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from diffprobe.probes.errors import ProbeError


def expand_proba(proba: np.ndarray, classes: np.ndarray, n_classes: int) -> np.ndarray:
    """(N, len(classes)) probabilities over a probe's ``classes_`` → (N, n_classes) over all classes."""
    if proba.shape[1] == n_classes and np.array_equal(classes, np.arange(n_classes)):
        return proba
    out = np.zeros((proba.shape[0], n_classes), dtype=proba.dtype)
    out[:, np.asarray(classes, dtype=np.int64)] = proba
    return out


def topk_accuracy(y_true: np.ndarray, proba: np.ndarray, k: int) -> float:
    """Fraction of rows whose true class is among the ``k`` most probable (ties broken by index)."""
    if len(y_true) == 0:
        return math.nan
    k = min(k, proba.shape[1])
    top = np.argsort(-proba, axis=1, kind="stable")[:, :k]
    return float((top == np.asarray(y_true)[:, None]).any(axis=1).mean())


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """(K, K) counts; row = true class, column = predicted class."""
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true), np.asarray(y_pred)), 1)
    return cm


def per_class_accuracy(cm: np.ndarray) -> np.ndarray:
    """(K,) recall of each class from a confusion matrix; NaN for classes with no items."""
    support = cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, np.diag(cm) / np.maximum(support, 1), np.nan)


def classification_metrics(
    y_true: np.ndarray, proba: np.ndarray, class_names: Sequence[str] | None = None
) -> dict[str, Any]:
    """Every metric as JSON-ready values.

    Args:
        y_true: (N,) int labels in [0, K).
        proba: (N, K) probabilities (or any scores: only their order matters).
        class_names: K names for ``per_class``; default "0".."K-1".
    Returns:
        ``{"top1", "top5", "mean_per_class", "per_class": {name: acc}, "confusion": [[…]], "n"}``;
        accuracies are fractions in [0, 1] (None where undefined).
    """
    y_true = np.asarray(y_true, dtype=np.int64)
    if proba.ndim != 2 or proba.shape[0] != y_true.shape[0]:
        raise ProbeError(f"expected proba of shape ({y_true.shape[0]}, K), got {proba.shape}")
    k = proba.shape[1]
    if y_true.size and (y_true.min() < 0 or y_true.max() >= k):
        raise ProbeError(f"expected labels in [0, {k}), got values from {y_true.min()} to {y_true.max()}")
    names = list(class_names) if class_names is not None else [str(i) for i in range(k)]
    if len(names) != k:
        raise ProbeError(f"expected {k} class names, got {len(names)}")
    cm = confusion_matrix(y_true, proba.argmax(axis=1), k)
    pc = per_class_accuracy(cm)
    return {
        "top1": _num(topk_accuracy(y_true, proba, 1)),
        "top5": _num(topk_accuracy(y_true, proba, 5)),
        "mean_per_class": _num(float(np.nanmean(pc)) if np.isfinite(pc).any() else math.nan),
        "per_class": {name: _num(float(a)) for name, a in zip(names, pc)},
        "confusion": cm.tolist(),
        "n": int(y_true.size),
    }


def _num(x: float) -> float | None:
    return None if math.isnan(x) else round(x, 6)
