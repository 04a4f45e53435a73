"""Probes trained on cached features (logistic, linear, k-NN, the paper's attention head and
DifFormer), on feature maps and masks (dense), and on images with the U-Net in the loop (DifFeed).

Every probe is a scikit-learn estimator (``fit``/``predict``/``predict_proba``/``score``, ``clone``
works). :func:`run_probe` trains one on a store's keys and evaluates it into a :class:`ProbeResult`
(one type for every probe); :func:`save_probe` / :func:`load_probe` keep it for predicting on
another store. Names are imported lazily (PEP 562) so that listing probe names does not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from diffprobe._lazy import lazy_exports
from diffprobe.probes.registry import DENSE_PROBES, IMAGE_PROBES, PROBES, create_probe, probe_class, probe_names

_EXPORTS: dict[str, str] = {
    "LogisticProbe": "diffprobe.probes.logistic",
    "LinearProbe": "diffprobe.probes.linear",
    "KNNProbe": "diffprobe.probes.knn",
    "AttentionProbe": "diffprobe.probes.attention",
    "DifFormerProbe": "diffprobe.probes.attention",
    "DenseProbe": "diffprobe.probes.dense.estimator",
    "DifFeedProbe": "diffprobe.probes.difffeed",
    "AttentionHead": "diffprobe.probes.heads",
    "DifFormerHead": "diffprobe.probes.heads",
    "Features": "diffprobe.probes.data",
    "load_features": "diffprobe.probes.data",
    "KeyInfo": "diffprobe.store.select",
    "KeySelection": "diffprobe.store.select",
    "resolve_selection": "diffprobe.store.select",
    "DataConfig": "diffprobe.probes.plan",
    "TrainConfig": "diffprobe.probes.optim",
    "ProbeConfig": "diffprobe.probes.result",
    "ProbeResult": "diffprobe.probes.result",
    "run_probe": "diffprobe.probes.run",
    "run_probe_per_key": "diffprobe.probes.run",
    "config_for_store": "diffprobe.probes.run",
    "dense_probe": "diffprobe.probes.dense.run",
    "Predictions": "diffprobe.probes.predict",
    "predict_split": "diffprobe.probes.predict",
    "TrainedProbe": "diffprobe.probes.io",
    "save_probe": "diffprobe.probes.io",
    "load_probe": "diffprobe.probes.io",
    "classification_metrics": "diffprobe.probes.metrics",
    "Standardizer": "diffprobe.probes.standardize",
    "ProbeError": "diffprobe.probes.errors",
    "LabelError": "diffprobe.probes.errors",
}

# Every registered estimator is exported under its class name, from its registration line alone: a
# new probe needs its module and that line, nothing here.
for _reg in (PROBES, DENSE_PROBES, IMAGE_PROBES):
    for _name in _reg.names():
        _module, _, _cls = str(_reg.target(_name)).partition(":")
        _EXPORTS.setdefault(_cls, _module)

__all__ = ["PROBES", "DENSE_PROBES", "IMAGE_PROBES", "create_probe", "probe_class", "probe_names", *_EXPORTS]
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, __all__)

if TYPE_CHECKING:
    from diffprobe.probes.attention import AttentionProbe, DifFormerProbe
    from diffprobe.probes.data import Features, load_features
    from diffprobe.probes.dense.estimator import DenseProbe
    from diffprobe.probes.dense.run import dense_probe
    from diffprobe.probes.difffeed import DifFeedProbe
    from diffprobe.probes.errors import LabelError, ProbeError
    from diffprobe.probes.heads import AttentionHead, DifFormerHead
    from diffprobe.probes.io import TrainedProbe, load_probe, save_probe
    from diffprobe.probes.knn import KNNProbe
    from diffprobe.probes.linear import LinearProbe
    from diffprobe.probes.logistic import LogisticProbe
    from diffprobe.probes.metrics import classification_metrics
    from diffprobe.probes.optim import TrainConfig
    from diffprobe.probes.plan import DataConfig
    from diffprobe.probes.predict import Predictions, predict_split
    from diffprobe.probes.result import ProbeConfig, ProbeResult
    from diffprobe.probes.run import config_for_store, run_probe, run_probe_per_key
    from diffprobe.probes.standardize import Standardizer
    from diffprobe.store.select import KeyInfo, KeySelection, resolve_selection
