"""Segmentation metrics from a confusion matrix: mIoU, per-class IoU, pixel accuracy."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch


def confusion(pred: torch.Tensor, truth: torch.Tensor, n_classes: int, ignore_index: int) -> np.ndarray:
    """(K, K) int64 counts, rows = truth, columns = prediction, over pixels whose truth is not ignored.

    Args:
        pred, truth: (N, H, W) integer class maps of the same shape.
    """
    keep = truth != ignore_index
    t, p = truth[keep].long(), pred[keep].long()
    idx = (t * n_classes + p).cpu()
    return torch.bincount(idx, minlength=n_classes * n_classes).reshape(n_classes, n_classes).numpy().astype(np.int64)


def segmentation_metrics(conf: np.ndarray, names: Sequence[str]) -> dict[str, Any]:
    """mIoU over the classes present (in truth or prediction), per-class IoU, pixel accuracy.

    IoU_k = TP_k / (TP_k + FP_k + FN_k); classes with no pixel in truth or prediction are left out
    of the mean (and reported as None).
    """
    tp = np.diag(conf).astype(np.float64)
    union = conf.sum(0) + conf.sum(1) - tp
    iou = np.where(union > 0, tp / np.maximum(union, 1), np.nan)
    total = conf.sum()
    return {
        "miou": float(np.nanmean(iou)) if np.any(union > 0) else float("nan"),
        "pixel_accuracy": float(tp.sum() / total) if total else float("nan"),
        "iou": {str(n): (None if np.isnan(v) else float(v)) for n, v in zip(names, iou)},
        "pixels": int(total),
    }
