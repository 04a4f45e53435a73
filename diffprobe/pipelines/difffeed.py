"""The DifFeed job on a dataset: splits, pass 1 from a store when it can serve it, fit, evaluate, report.

The model is resolved once per run (:class:`FeedbackModel`: its spec, checkpoint, identity and the
feedback plan) and handed to everything that needs it. The result is a
:class:`~diffprobe.probes.result.ProbeResult` like every other probe's (metrics JSON, tidy CSV row,
saved probe), keyed by the read block's native map at t (``t0150_b24_full``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from diffprobe.blocks import resolve_blocks
from diffprobe.extract.adm.feedback import plan_feedback, require_adm
from diffprobe.extract.registry import check_model, store_identity
from diffprobe.extract.sources.discover import discover
from diffprobe.extract.spec import Conditioning, ModelSpec
from diffprobe.probes.data import Features, default_splits
from diffprobe.probes.difffeed import DifFeedProbe
from diffprobe.probes.errors import ProbeError
from diffprobe.probes.images import ImageSet, stored_pass1
from diffprobe.probes.io import TrainedProbe
from diffprobe.probes.metrics import classification_metrics, expand_proba, topk_accuracy
from diffprobe.probes.plan import plan_folds
from diffprobe.probes.predict import Predictions
from diffprobe.probes.registry import create_probe
from diffprobe.probes.result import ProbeConfig, ProbeResult
from diffprobe.store.layout import FeatureKey
from diffprobe.store.select import KeyInfo
from diffprobe.store.store import FeatureStore, open_store

log = logging.getLogger(__name__)


def _as_features(split: str, images: ImageSet) -> Features:
    """The item table of ``images`` in the form the data plans read (labels, ids, paths; no features)."""
    n = len(images)
    paths = np.array([it.path for it in images.items])
    return Features(split, (), None, images.labels, images.ids, paths, np.ones(n, dtype=bool), 1, ())


@dataclass(frozen=True)
class FeedbackModel:
    """DifFeed's model, resolved once: the spec (checked to be ADM), the weights, the identity a store's
    first pass must share, the read block and the decoder blocks fed back."""

    spec: ModelSpec
    checkpoint: Path | None
    identity: dict[str, Any]
    read: int
    sources: tuple[int, ...]

    @classmethod
    def of(cls, est: DifFeedProbe) -> FeedbackModel:
        cond = Conditioning(est.class_label)
        spec, checkpoint = check_model(est.model, dict(est.flags or ()), est.checkpoint, est.random_weights, cond)
        require_adm(spec)
        read = resolve_blocks([est.read_block], spec.blocks)[0]
        sources = tuple(plan_feedback(spec.blocks, spec.config.num_res_blocks, est.feedback, read).sources)
        return cls(spec, checkpoint, {**store_identity(spec, checkpoint, cond), "seed": est.seed}, read, sources)


def with_pass1(images: ImageSet, store: FeatureStore | None, split: str, est: DifFeedProbe, model: FeedbackModel) -> ImageSet:
    """``images`` carrying their pass-1 maps from ``store`` when it can serve them (logged either way)."""
    if store is None:
        log.info("first pass computed online (no store given)")
        return images
    found = stored_pass1(store, split, images.items, est.t, model.sources, model.identity, est.draws)
    if found is None:
        return images
    arrays, rows, draw_axis = found
    return ImageSet(images.items, arrays, rows, draw_axis)


def run_difffeed(data: str | Path, config: ProbeConfig, store: str | Path | FeatureStore | None = None,
                 class_names: list[str] | None = None) -> ProbeResult:  # fmt: skip
    """Fit DifFeed (``config.params`` are :class:`DifFeedProbe`'s) on ``data``'s train split and evaluate
    it on the eval split, or on a stratified hold-out (``config.data``, as for every probe).

    Args:
        data: an ImageFolder tree or a manifest, as for extraction.
        store: a feature store holding the feedback blocks' native maps at t (pass 1 is read from it).
    """
    if isinstance(store, (str, Path)):
        with open_store(store) as opened:
            return run_difffeed(data, config, opened, class_names)
    if config.data.folds is not None:
        raise ProbeError("expected DifFeed without --folds (it trains the U-Net's feedback once per run)")
    spec = discover(data)
    train_split, eval_split = default_splits(list(spec.splits), config.data.train_split, config.data.eval_split)
    est = create_probe(config.probe, **dict(config.params))
    train = ImageSet(tuple(spec.splits[train_split]))
    evaluation = ImageSet(tuple(spec.splits[eval_split])) if eval_split else None
    eval_items = _as_features(eval_split, evaluation) if eval_split and evaluation is not None else None
    fold = plan_folds(_as_features(train_split, train), eval_items, config.data)[0]
    target = evaluation if evaluation is not None else train
    model = FeedbackModel.of(est)
    fit_set = with_pass1(train.subset(fold.train_items), store, train_split, est, model)
    eval_set = with_pass1(target.subset(fold.eval_items), store, eval_split or train_split, est, model)
    names = class_names or list(spec.class_names)
    t0 = time.perf_counter()
    est.fit(fit_set, fit_set.labels)
    seconds = time.perf_counter() - t0
    proba = expand_proba(est.predict_proba(eval_set), est.classes_, len(names))
    y = eval_set.labels
    key = FeatureKey(est.t, est.read_block_, None)
    keys = (KeyInfo(key.name, key),)
    store_info = {"path": str(store.path), "config_hash": store.config_hash} if store is not None else {"path": None, "config_hash": None}
    trained = TrainedProbe(est, keys, names, (), {"data": str(data), "train_split": train_split, "keys": [key.name]})
    eval_name = eval_split or f"{train_split}[holdout={config.data.holdout}]"
    return ProbeResult(
        config=config, keys=keys, train_split=train_split, eval_split=eval_name,
        metrics=classification_metrics(y, proba, names), fold_scores=[round(float(topk_accuracy(y, proba, 1)), 6)],
        n_train=len(fit_set), n_eval=len(eval_set), fit_seconds=seconds, selected={}, store=store_info, trained=trained,
    )  # fmt: skip


def predict_images(
    trained: TrainedProbe, data: str | Path, split: str, store: FeatureStore | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids, probabilities, labels) of a saved image probe on every item of ``data``'s ``split``."""
    spec = discover(data)
    if split not in spec.splits:
        raise ProbeError(f"expected a split of {data}, got {split!r}; valid: {', '.join(spec.splits)}")
    images = with_pass1(ImageSet(tuple(spec.splits[split])), store, split, trained.estimator, FeedbackModel.of(trained.estimator))
    proba = expand_proba(trained.estimator.predict_proba(images), trained.estimator.classes_, len(trained.class_names))
    return images.ids, proba, images.labels


def predict_data(trained: TrainedProbe, data: str | Path, split: str) -> Predictions:
    """Run an image probe (DifFeed) on every item of ``split`` of the images in ``data``."""
    ids, proba, labels = predict_images(trained, data, split)
    return Predictions(split, ids, proba, labels, list(trained.class_names))
