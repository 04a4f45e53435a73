"""One probe run on a store: load keys, plan folds, fit (the estimator standardises on train), evaluate, report."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from diffprobe.probes.data import Features, default_splits, load_features
from diffprobe.probes.errors import ProbeError
from diffprobe.probes.io import TrainedProbe
from diffprobe.probes.metrics import classification_metrics, topk_accuracy
from diffprobe.probes.plan import DataConfig, plan_folds
from diffprobe.probes.registry import create_probe
from diffprobe.probes.result import ProbeConfig, ProbeResult
from diffprobe.store.reader import StoreReader
from diffprobe.store.select import KeyInfo, KeySelection, resolve_selection

log = logging.getLogger(__name__)

def config_for_store(store: StoreReader, probe: str, selection: KeySelection | None = None, params: Mapping[str, Any] | None = None,
                     data: DataConfig | None = None) -> ProbeConfig:  # fmt: skip
    """The run of ``probe`` on the arrays ``selection`` names in ``store``'s training split (see
    :func:`~diffprobe.store.select.resolve_selection`; the default: the split's only stored key)."""
    data = data or DataConfig()
    train_split, _ = default_splits(list(store.splits), data.train_split, data.eval_split)
    keys = resolve_selection(store, train_split, selection or KeySelection())
    return ProbeConfig(probe, tuple(k.name for k in keys), dict(params or {}), data)


def selected_params(est: Any) -> dict[str, Any]:
    """Hyper-parameters a probe chose itself (C for logistic, lr for linear …), JSON-ready."""
    out = {}
    for name in ("C_", "best_lr_"):
        if hasattr(est, name):
            value = getattr(est, name)
            out[name.rstrip("_")] = value[0] if isinstance(value, list) and len(value) == 1 else value
    return out


def layout_params(probe: Any, keys: tuple[KeyInfo, ...], shapes: tuple[tuple[int, int, int], ...],
                  rows_per_item: int | None = None) -> dict[str, Any]:  # fmt: skip
    """Layout parameters a probe accepts: map shapes for spatial probes, rows per item (views × draws)
    for probes with an internal hold-out."""
    names = probe.get_params()
    out: dict[str, Any] = {}
    if "rows_per_item" in names and rows_per_item is not None:
        out["rows_per_item"] = rows_per_item
    if "input_shape" in names:
        if len(shapes) != 1:
            raise ProbeError(f"expected one key for the attention probe, got {len(shapes)}; use difformer to fuse several")
        out["input_shape"] = shapes[0]
    if "input_shapes" in names:
        out["input_shapes"] = shapes
        out["input_times"] = [k.key.t if k.key is not None else i for i, k in enumerate(keys)]
        out["input_blocks"] = [k.key.block if k.key is not None else -1 - i for i, k in enumerate(keys)]
    return out


def fit_probe(config: ProbeConfig, train: Features, items: np.ndarray) -> tuple[Any, float]:
    """Fit the configured probe on ``items`` of ``train`` (every (view, draw) row a sample: V·K per
    item); returns (estimator, seconds).

    The estimator standardises its input itself: it gets ``standardize=config.data.standardize``.
    """
    X, y = train.training_rows(items)
    if train.per_item > 1:
        log.info("%s: %d items × %d views × %d draws = %d training rows", config.probe, len(items), train.views, train.draws, len(y))
    est = create_probe(config.probe, **dict(config.params))
    if "standardize" in est.get_params():
        est.set_params(standardize=config.data.standardize)
    elif config.data.standardize:
        raise ProbeError(
            f"expected the {config.probe} probe to take a `standardize` parameter (add `standardize: bool = True` "
            "to its __init__); or run it with --no-standardize"
        )
    est.set_params(**layout_params(est, train.keys, train.shapes, train.per_item))
    t0 = time.perf_counter()
    est.fit(X, y)
    return est, time.perf_counter() - t0


def run_probe(store: StoreReader | str | Path, config: ProbeConfig, *, class_names: list[str] | None = None) -> ProbeResult:
    """Fit and evaluate ``config`` on ``store`` (a path, or an open store: ``diffprobe.store.open_store``).

    Several keys are concatenated into one feature vector. Training uses every (view, draw) row of
    its items; metrics are computed on view 0 (averaged over draws) of the eval split, or of the
    held-out items (all folds' out-of-fold predictions for k-fold).
    """
    return _run(store, config, class_names, per_key=False)[0]


def run_probe_per_key(store: StoreReader | str | Path, config: ProbeConfig, *, class_names: list[str] | None = None) -> list[ProbeResult]:
    """One result per key from a single fit: for probes with independent heads per column group.

    The probe (``linear``) is given ``feature_groups`` = the width of each key, so every key gets its
    own head and all of them are trained in the same pass over the data.
    """
    return _run(store, config, class_names, per_key=True)


def _splits(store: StoreReader, data: DataConfig) -> tuple[str, str | None]:
    train, evaluation = default_splits(list(store.splits), data.train_split, data.eval_split)
    if data.folds is not None and data.eval_split is None:
        return train, None  # k-fold runs within the train split
    return train, evaluation


def _run(store: StoreReader | str | Path, config: ProbeConfig, class_names: list[str] | None, per_key: bool) -> list[ProbeResult]:
    if isinstance(store, (str, Path)):
        from diffprobe.store import open_store

        with open_store(store) as opened:
            return _run(opened, config, class_names, per_key)
    train_split, eval_split = _splits(store, config.data)
    lazy, limit, partial = config.data.lazy, config.data.max_memory, config.data.allow_incomplete
    train = load_features(store, train_split, config.keys, lazy=lazy, max_memory=limit, allow_incomplete=partial)
    evaluation = (load_features(store, eval_split, config.keys, lazy=lazy, max_memory=limit, first_view=True, allow_incomplete=partial)
                  if eval_split else None)  # fmt: skip
    folds = plan_folds(train, evaluation, config.data)
    target = evaluation if evaluation is not None else train
    names = class_names or list(store.class_names)
    n_classes = max(len(names), int(max(train.y.max(), target.y.max())) + 1)
    names = names if len(names) == n_classes else [str(i) for i in range(n_classes)]
    groups = len(train.keys) if per_key else 1
    if per_key:
        widths = [int(np.prod(s)) for s in train.shapes]
        config = replace(config, params={**dict(config.params), "feature_groups": widths})
    proba = np.zeros((groups, target.n_items, n_classes), dtype=np.float32)
    seen = np.zeros(target.n_items, dtype=bool)
    fold_scores: list[list[float]] = [[] for _ in range(groups)]
    seconds, trained = 0.0, None
    for i, fold in enumerate(folds):
        est, sec = fit_probe(config, train, fold.train_items)
        trained = TrainedProbe(est, train.keys, names, train.shapes)
        p = trained.predict_proba_groups(target, fold.eval_items) if per_key else trained.predict_proba(target, fold.eval_items)[None]
        proba[:, fold.eval_items], seen[fold.eval_items] = p, True
        for g in range(groups):
            fold_scores[g].append(topk_accuracy(target.y[fold.eval_items], p[g], 1))
        seconds += sec
        log.info("%s on %s, fold %d/%d: %.2fs", config.probe, "+".join(config.keys), i + 1, len(folds), sec)
    items = np.flatnonzero(seen)
    eval_name = eval_split or (f"{train_split}[{len(folds)}-fold]" if len(folds) > 1 else f"{train_split}[holdout={config.data.holdout}]")
    store_info = {"path": str(store.path), "config_hash": store.config_hash}
    read = [f for f in (train, evaluation) if f is not None]
    if not all(f.complete for f in read):
        log.warning("%s: read only the finished items (--allow-incomplete): %s", config.probe,
                    "; ".join(f"{f.split} {f.n_items} of {f.coverage.n_items}" for f in read if f.coverage is not None))  # fmt: skip
    if trained is not None:
        trained.info = {"store": store_info, "train_split": train_split, "keys": list(config.keys)}
    selected = selected_params(trained.estimator) if trained else {}
    results = []
    for g in range(groups):
        keys = (train.keys[g],) if per_key else train.keys
        sel = {k: (v[g] if per_key and isinstance(v, list) else v) for k, v in selected.items()}
        results.append(
            ProbeResult(
                config=config if not per_key else replace(config, keys=(keys[0].name,)),
                keys=keys,
                train_split=train_split,
                eval_split=eval_name,
                metrics=classification_metrics(target.y[items], proba[g, items], names),
                fold_scores=[round(float(v), 6) for v in fold_scores[g]],
                n_train=int(sum(f.train_items.size for f in folds) / len(folds)),
                n_eval=int(items.size),
                fit_seconds=seconds / groups,
                selected=sel,
                store=store_info,
                trained=trained if len(folds) == 1 and not per_key else None,
                complete=all(f.complete for f in read),
                coverage={f.split: f.coverage.record() for f in read if f.coverage is not None},
            )
        )
    return results



