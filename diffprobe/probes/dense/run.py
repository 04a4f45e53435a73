"""One dense probe run: a head trained on a store's train split (every view of its items), scored on
its eval split (view 0) or a hold-out of the train split — on the same rails as every other probe:
a :class:`~diffprobe.probes.result.ProbeConfig` in, a :class:`~diffprobe.probes.result.ProbeResult`
(task ``dense``) out."""

from __future__ import annotations

import logging
import time

import numpy as np

from diffprobe.probes.data import default_splits
from diffprobe.probes.dense.estimator import DenseProbe
from diffprobe.probes.dense.source import PIXELS, DenseSource
from diffprobe.probes.errors import ProbeError
from diffprobe.probes.registry import create_probe
from diffprobe.probes.result import ProbeConfig, ProbeResult
from diffprobe.store.layout import IGNORE_INDEX
from diffprobe.store.select import KeyInfo
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


def mask_class_names(store: FeatureStore, n_classes: int) -> list[str]:
    """The masks' class names as the store records them (``mask_classes``), else their indices."""
    names = list((store.attrs or {}).get("mask_classes") or [])
    return names if len(names) == n_classes else [str(i) for i in range(n_classes)]


def _sources(store: FeatureStore, config: ProbeConfig) -> tuple[DenseSource, DenseSource, str, str]:
    """(train source with every view, eval source, train split, eval split name) of a run."""
    data = config.data
    train_split, eval_split = default_splits(list(store.splits), data.train_split, data.eval_split)
    names, partial = list(config.keys), data.allow_incomplete
    if eval_split is not None:
        return (DenseSource.of(store, train_split, names, every_view=True, allow_incomplete=partial),
                DenseSource.of(store, eval_split, names, allow_incomplete=partial), train_split, eval_split)  # fmt: skip
    valid = DenseSource.of(store, train_split, names, allow_incomplete=partial).rows
    held = np.random.default_rng(data.seed).random(len(valid)) < data.holdout  # masks carry no class: a plain random hold-out
    if held.all() or not held.any():
        raise ProbeError(f"the hold-out of split {train_split!r} is empty or takes every item; use another --holdout or more items")
    return (DenseSource.of(store, train_split, names, every_view=True, rows=valid[~held], allow_incomplete=partial),
            DenseSource.of(store, train_split, names, rows=valid[held], allow_incomplete=partial), train_split,
            f"{train_split}[holdout={data.holdout}]")  # fmt: skip


def dense_probe(store: FeatureStore, config: ProbeConfig, *, grid: str | None = None) -> ProbeResult:
    """Train the dense probe ``config`` describes (``config.params`` are :class:`DenseProbe`'s, e.g.
    head, members, epochs, lr) on the arrays ``config.keys`` (or ``["pixels"]``, the raw-pixel
    baseline) and score it; ``grid``: a PNG of a few evaluation items (image, truth, prediction).

    A store with views trains on every view of its items, each with its own mask, and scores view 0
    (the evaluation transform) with view 0's masks.
    """
    if config.probe != "dense":
        raise ProbeError(f"expected the dense probe's config, got probe {config.probe!r}")
    train, test, train_split, eval_name = _sources(store, config)
    k = max(mask_classes(store, train_split), mask_classes(store, test.split))
    est: DenseProbe = create_probe("dense", **dict(config.params))
    t0 = time.perf_counter()
    est.fit_source(train, k)
    seconds = time.perf_counter() - t0
    scored = est.evaluate(test, mask_class_names(store, k))
    if grid:
        from diffprobe.probes.dense.grid import write_grid

        write_grid(est.head_, test, grid, k, est.device, mask_class_names(store, k))
    conf = scored.pop("confusion")
    log.debug("dense %s probe on %s: mIoU %.2f%%", est.head, "+".join(config.keys), 100 * scored["miou"])
    keys = tuple(KeyInfo(PIXELS) if n == PIXELS else KeyInfo.of(n) for n in config.keys)
    return ProbeResult(
        config=config, keys=keys, train_split=train_split, eval_split=eval_name, metrics=scored,
        fold_scores=[round(float(scored["miou"]), 6)], n_train=int(len(train.rows)), n_eval=int(len(test.rows)), fit_seconds=seconds,
        selected={}, store={"path": str(store.path), "config_hash": store.config_hash}, trained=est, task="dense",
        extra={"confusion": conf, "losses": [float(v) for v in est.losses_], "n_classes": k, "views": train.views},
        complete=all(s.coverage is None or s.coverage.complete for s in (train, test)),
        coverage={s.split: s.coverage.record() for s in (train, test) if s.coverage is not None},
    )  # fmt: skip
