"""One dense probe run: a head trained on a store's train split, scored on its eval split."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from typing import Any

import torch

from diffprobe.errors import ConfigError
from diffprobe.probes.dense.heads import HEADS, DenseHead, MLPDenseHead
from diffprobe.probes.dense.metrics import segmentation_metrics
from diffprobe.probes.dense.source import DenseSource
from diffprobe.probes.dense.train import DenseTraining, evaluate, fit_head
from diffprobe.store.layout import IGNORE_INDEX
from diffprobe.store.store import FeatureStore

log = logging.getLogger(__name__)


def mask_classes(store: FeatureStore, split: str, batch: int = 1024) -> int:
    """K: one more than the largest class index in the split's masks (ignore index left out)."""
    top = 0
    n = store.n_items(split)
    for s in range(0, n, batch):
        m = store.masks(split, slice(s, min(n, s + batch)))
        m = m[m != IGNORE_INDEX]
        top = max(top, int(m.max(initial=0)))
    return top + 1


def dense_probe(store: FeatureStore, names: list[str], *, head: str = "linear", train_split: str = "train",
                eval_split: str = "val", training: DenseTraining | None = None, class_names: list[str] | None = None,
                members: int = 1, grid: str | None = None) -> dict[str, Any]:  # fmt: skip
    """Train ``head`` (``linear``, or ``mlp`` with ``members`` in its ensemble) on the arrays ``names``
    (or ``["pixels"]``) of ``train_split`` and score it on ``eval_split``; ``grid``: a PNG of a few
    evaluation items (image, truth, prediction).

    Returns:
        {"probe", "keys", "train", "eval", "metrics": {miou, pixel_accuracy, iou, pixels}, "losses", "seconds", "training"}.
    """
    if head not in HEADS:
        raise ConfigError(f"unknown dense head {head!r}; valid: {', '.join(HEADS)}")
    cfg = training or DenseTraining()
    train, test = DenseSource.of(store, train_split, names), DenseSource.of(store, eval_split, names)
    k = max(mask_classes(store, train_split), mask_classes(store, eval_split))
    torch.manual_seed(cfg.seed)  # the head's initialisation
    net: DenseHead = (MLPDenseHead(train.channels(), k, max(train.sizes()), members=members) if head == "mlp"
                      else HEADS[head](train.channels(), k, max(train.sizes())))  # fmt: skip
    t0 = time.perf_counter()
    losses = fit_head(net, train, cfg)
    conf = evaluate(net, test, k, cfg.device, max_memory=cfg.max_memory)
    if grid:
        from diffprobe.probes.dense.grid import write_grid

        write_grid(net, test, grid, k, cfg.device)
    names_k = class_names if class_names and len(class_names) == k else [str(i) for i in range(k)]
    metrics = segmentation_metrics(conf, names_k)
    log.info("dense %s probe on %s: mIoU %.2f%%", head, "+".join(names), 100 * metrics["miou"])
    return {"probe": f"dense-{head}", "members": members if head == "mlp" else None, "keys": names, "train": {"split": train_split, "items": int(len(train.rows))},
            "eval": {"split": eval_split, "items": int(len(test.rows))}, "metrics": metrics, "confusion": conf.tolist(),
            "losses": [float(v) for v in losses], "seconds": round(time.perf_counter() - t0, 2), "training": asdict(cfg),
            "n_classes": k}  # fmt: skip
