"""One dense probe run: a head trained on a store's train split, scored on its eval split."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from typing import Any

from diffprobe.probes.dense.estimator import DenseProbe
from diffprobe.probes.dense.source import DenseSource
from diffprobe.probes.optim import TrainConfig
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
                eval_split: str = "val", training: TrainConfig | None = None, max_memory: int = 512 << 20, class_names: list[str] | None = None,
                members: int = 1, grid: str | None = None) -> dict[str, Any]:  # fmt: skip
    """Train ``head`` (``linear``, or ``mlp`` with ``members`` in its ensemble) on the arrays ``names``
    (or ``["pixels"]``) of ``train_split`` and score it on ``eval_split``; ``grid``: a PNG of a few
    evaluation items (image, truth, prediction). A store with views trains on every view of its items,
    each with its own mask, and scores view 0 (the evaluation transform) with view 0's masks.

    Returns:
        {"probe", "keys", "train", "eval", "metrics": {miou, pixel_accuracy, iou, pixels}, "losses", "seconds", "training"}.
    """
    cfg = training or DenseProbe().training
    train, test = DenseSource.of(store, train_split, names, every_view=True), DenseSource.of(store, eval_split, names)
    k = max(mask_classes(store, train_split), mask_classes(store, eval_split))
    est = DenseProbe(head, members, cfg.epochs, cfg.batch_size, cfg.lr, cfg.momentum, cfg.weight_decay, cfg.optimizer, cfg.schedule,
                     cfg.seed, cfg.device, max_memory)  # fmt: skip
    t0 = time.perf_counter()
    est.fit_source(train, k)
    scored = est.evaluate(test, class_names)
    if grid:
        from diffprobe.probes.dense.grid import write_grid

        write_grid(est.head_, test, grid, k, cfg.device)
    conf = scored.pop("confusion")
    log.info("dense %s probe on %s: mIoU %.2f%%", head, "+".join(names), 100 * scored["miou"])
    return {"probe": f"dense-{head}", "members": members if head == "mlp" else None, "keys": names,
            "train": {"split": train_split, "items": int(len(train.rows)), "views": train.views},
            "eval": {"split": eval_split, "items": int(len(test.rows))},
            "metrics": scored, "confusion": conf, "losses": [float(v) for v in est.losses_],
            "seconds": round(time.perf_counter() - t0, 2), "training": asdict(cfg), "n_classes": k}  # fmt: skip
