"""Which items train and which evaluate: split defaults, hold-out / k-fold, label subsets."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from diffprobe.probes.data import DEFAULT_MAX_MEMORY, Features, require_labels
from diffprobe.probes.errors import ProbeError
from diffprobe.probes.splits import match_subset, read_subset_file, stratified_fraction, stratified_holdout, stratified_kfold

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DataConfig:
    """How a probe run selects and prepares its data.

    Attributes:
        train_split, eval_split: None = defaults (train → val/validation/test; a hold-out of the
            train split when there is no other split or both name the same split).
        holdout: fraction of labelled items held out for evaluation when there is one split.
        folds: k-fold cross-validation instead of a single hold-out (one split only).
        train_subset: a file of item ids / paths / file names restricting the training items.
        train_fraction: keep a stratified fraction of the training items (after ``train_subset``).
        seed: seeds the hold-out, the folds and the fraction.
        standardize: per-feature standardisation with training statistics only.
        lazy: keep features on disk and stream them (None: only when over ``max_memory``).
        max_memory: bytes of float32 features a split may take in memory before it is streamed.
        allow_incomplete: read a split whose units are not all done (a stopped or running
            extraction): only the items of its done units, the result recording ``complete: false``
            (by default such a split is an error; see :mod:`diffprobe.store.coverage`).
    """

    train_split: str | None = None
    eval_split: str | None = None
    holdout: float = 0.2
    folds: int | None = None
    train_subset: str | None = None
    train_fraction: float | None = None
    seed: int = 0
    standardize: bool = True
    lazy: bool | None = None
    max_memory: int = DEFAULT_MAX_MEMORY
    allow_incomplete: bool = False

    def __post_init__(self) -> None:
        if not 0.0 < self.holdout < 1.0:
            raise ProbeError(f"expected holdout in (0, 1), got {self.holdout}")
        if self.folds is not None and self.folds < 2:
            raise ProbeError(f"expected folds ≥ 2, got {self.folds}")
        if self.max_memory <= 0:
            raise ProbeError(f"expected max_memory > 0 bytes, got {self.max_memory}")
        if self.train_fraction is not None and not 0.0 < self.train_fraction <= 1.0:
            raise ProbeError(f"expected train_fraction in (0, 1], got {self.train_fraction}")


@dataclass(frozen=True)
class Fold:
    """Item indices into the train features and into the eval features (the same object for a hold-out)."""

    train_items: np.ndarray
    eval_items: np.ndarray


def restrict_training(train: Features, items: np.ndarray, cfg: DataConfig) -> np.ndarray:
    """Apply ``train_subset`` then ``train_fraction`` to the training items."""
    if cfg.train_subset is not None:
        keep = match_subset(read_subset_file(cfg.train_subset), train.ids, train.paths)
        items = np.intersect1d(items, keep)
        if items.size == 0:
            raise ProbeError(f"the subset list {cfg.train_subset!r} leaves no labelled training item")
    if cfg.train_fraction is not None and cfg.train_fraction < 1.0:
        items = items[stratified_fraction(train.y[items], cfg.train_fraction, cfg.seed)]
    return items


def plan_folds(train: Features, evaluation: Features | None, cfg: DataConfig) -> list[Fold]:
    """The folds of a run: one (train split → eval split), one hold-out, or k folds of the train split."""
    labelled = require_labels(train, "train")
    if evaluation is not None:
        if cfg.folds is not None:
            raise ProbeError("expected --folds only without an eval split (k-fold runs within one split)")
        return [Fold(restrict_training(train, labelled, cfg), require_labels(evaluation, "eval"))]
    y = train.y[labelled]
    if cfg.folds is not None:
        pairs = stratified_kfold(y, cfg.folds, cfg.seed)
    else:
        pairs = [stratified_holdout(y, cfg.holdout, cfg.seed)]
    folds = [Fold(restrict_training(train, labelled[a], cfg), labelled[b]) for a, b in pairs]
    for f in folds:
        if f.eval_items.size == 0:
            raise ProbeError(f"the hold-out of split {train.split!r} is empty; use a larger --holdout or more items")
    return folds
