"""Trained probes on disk: a torch state dict of tensors plus a JSON description — nothing pickled.

``save_probe(trained, DIR)`` writes ``DIR/probe.json`` (probe name, hyper-parameters, the keys and
class names it was trained on, non-array learned attributes) and ``DIR/weights.pt`` (every learned
array and module state as tensors, the standardisation statistics ``mean_``/``scale_`` included).
``load_probe(DIR)`` reads the weights with ``torch.load(weights_only=True)`` and rebuilds the
estimator, ready to predict on another store.

Format 2 (this one): the estimator standardises its own input. Format 1 kept the statistics beside
it (``standardizer/mean``, ``standardizer/scale`` and ``"standardized"``); it still loads, as the
same estimator with ``standardize`` set accordingly, and predicts the same.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from diffprobe.outputs import claim_output
from diffprobe.probes.arrays import as_numpy
from diffprobe.probes.data import Features, load_features
from diffprobe.probes.errors import ProbeError
from diffprobe.probes.metrics import expand_proba
from diffprobe.probes.registry import probe_class, probe_name_of
from diffprobe.store.reader import StoreReader
from diffprobe.store.select import KeyInfo

log = logging.getLogger(__name__)
FORMAT_VERSION = 2
#: Formats this version reads.
READABLE_VERSIONS = (1, 2)


@dataclass
class TrainedProbe:
    """A fitted estimator with everything needed to apply it to another store's features.

    The estimator takes raw features: it standardises them itself when it was fitted with
    ``standardize=True``.
    """

    estimator: Any
    keys: tuple[KeyInfo, ...]
    class_names: list[str]
    shapes: tuple[tuple[int, int, int], ...] = ()
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def probe(self) -> str:
        return probe_name_of(self.estimator)

    def predict_proba(self, features: Features, items: np.ndarray | None = None) -> np.ndarray:
        """Probabilities (n_items, n_classes) for ``items`` (default: all): view 0 of each item (the
        evaluation transform), averaged over its noise draws."""
        items, X = self._eval_input(features, items)
        proba = self.estimator.predict_proba(X)
        proba = expand_proba(proba, self.estimator.classes_, len(self.class_names))
        return proba.reshape(items.size, features.draws, -1).mean(axis=1)

    def predict_proba_groups(self, features: Features, items: np.ndarray | None = None) -> np.ndarray:
        """Per-group probabilities (G, n_items, n_classes) of a probe with one head per column group
        (view 0, averaged over draws, as :meth:`predict_proba`)."""
        if not hasattr(self.estimator, "predict_proba_groups"):
            raise ProbeError(f"the {self.probe} probe has no per-group heads")
        items, X = self._eval_input(features, items)
        proba = self.estimator.predict_proba_groups(X)
        out = np.stack([expand_proba(p, self.estimator.classes_, len(self.class_names)) for p in proba])
        return out.reshape(out.shape[0], items.size, features.draws, -1).mean(axis=2)

    def _eval_input(self, features: Features, items: np.ndarray | None) -> tuple[np.ndarray, Any]:
        """(items, X (n_items·K, D)): the rows of view 0 of ``items`` (default: all)."""
        if tuple(features.shapes) != tuple(self.shapes):
            raise ProbeError(
                f"expected features of shapes {list(self.shapes)} (as in training), got {list(features.shapes)}"
            )
        items = np.arange(features.n_items) if items is None else np.asarray(items)
        whole = items.size == features.n_items and features.views == 1
        return items, features.X if whole else features.X[features.eval_rows(items)]

    def predict_store(self, store: StoreReader, split: str, **load: Any) -> tuple[np.ndarray, np.ndarray]:
        """(item ids, probabilities) of every decodable item of ``split`` in ``store`` (view 0 of a views store)."""
        feats = load_features(store, split, [k.name for k in self.keys], first_view=True, **load)
        items = np.flatnonzero(feats.valid)
        return feats.ids[items], self.predict_proba(feats, items)


def _learned(est: Any) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    meta: dict[str, Any] = {}
    for name, value in vars(est).items():
        if not name.endswith("_") or name.startswith("_"):
            continue
        if isinstance(value, nn.Module):
            for k, v in value.state_dict().items():
                tensors[f"{name}/{k}"] = v.detach().cpu()
            meta[name] = {"kind": "module"}
        elif isinstance(value, list) and value and all(isinstance(v, np.ndarray) for v in value):
            for i, v in enumerate(value):
                tensors[f"{name}/{i}"] = torch.from_numpy(np.ascontiguousarray(v))
            meta[name] = {"kind": "arrays", "len": len(value)}
        elif isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
            tensors[name] = torch.from_numpy(np.ascontiguousarray(value))
            meta[name] = {"kind": "array"}
        elif hasattr(value, "shape") and hasattr(value, "dtype") and not isinstance(value, np.ndarray):
            tensors[name] = torch.from_numpy(as_numpy(value))  # a lazy k-NN bank is materialised
            meta[name] = {"kind": "array"}
        else:
            value = value.tolist() if isinstance(value, np.ndarray) else value
            meta[name] = {"kind": "json", "value": value}
    return tensors, meta


def save_probe(trained: TrainedProbe, path: str | Path, *, overwrite: bool = False) -> Path:
    """Write ``trained`` to the directory ``path`` (created); returns the directory.

    An existing file or non-empty folder at ``path`` is refused (:class:`OutputExistsError`) unless
    ``overwrite``, which writes ``probe.json`` and ``weights.pt`` over the old ones.
    """
    out = claim_output(path, overwrite=overwrite, option="--save")
    if out.exists() and not out.is_dir():
        raise ProbeError(f"expected a folder to save the probe in, got the file {out}; choose another --save")
    est = trained.estimator
    tensors, learned = _learned(est)
    out.mkdir(parents=True, exist_ok=True)
    doc = {
        "format": "diffprobe-probe",
        "version": FORMAT_VERSION,
        "probe": trained.probe,
        "params": json.loads(json.dumps(est.get_params(), default=list)),
        "learned": learned,
        "keys": [k.to_dict() for k in trained.keys],
        "class_names": list(trained.class_names),
        "shapes": [list(s) for s in trained.shapes],
        "info": trained.info,
    }
    torch.save(tensors, out / "weights.pt")
    (out / "probe.json").write_text(json.dumps(doc, indent=1, default=str))
    log.info("saved %s probe to %s", trained.probe, out)
    return out


def load_probe(path: str | Path, device: str | None = None) -> TrainedProbe:
    """Read a probe written by :func:`save_probe` (weights loaded with ``weights_only=True``)."""
    d = Path(path)
    if not (d / "probe.json").is_file() or not (d / "weights.pt").is_file():
        raise ProbeError(f"expected a saved probe directory with probe.json and weights.pt, got {str(path)!r}")
    doc = json.loads((d / "probe.json").read_text())
    if doc.get("format") != "diffprobe-probe" or doc.get("version") not in READABLE_VERSIONS:
        versions = " or ".join(map(str, READABLE_VERSIONS))
        raise ProbeError(f"expected a diffprobe probe (format version {versions}), got {doc.get('format')!r} v{doc.get('version')}")
    tensors = torch.load(d / "weights.pt", map_location="cpu", weights_only=True)
    if doc["version"] == 1:
        doc = _from_format_1(doc, tensors)
    params = dict(doc["params"])
    if device is not None and "device" in params:
        params["device"] = device
    est = probe_class(doc["probe"])(**params)
    modules = {}
    for name, spec in doc["learned"].items():
        kind = spec["kind"]
        if kind == "array":
            setattr(est, name, tensors[name].numpy())
        elif kind == "arrays":
            setattr(est, name, [tensors[f"{name}/{i}"].numpy() for i in range(spec["len"])])
        elif kind == "json":
            value = spec["value"]
            setattr(est, name, np.asarray(value) if name == "classes_" else value)
        else:
            modules[name] = {k[len(name) + 1 :]: v for k, v in tensors.items() if k.startswith(f"{name}/")}
    est._build_modules()
    for name, state in modules.items():
        getattr(est, name).load_state_dict(state)
    keys = tuple(KeyInfo.from_dict(k) for k in doc["keys"])
    shapes = tuple(tuple(s) for s in doc["shapes"])
    return TrainedProbe(est, keys, doc["class_names"], shapes, doc.get("info", {}))  # type: ignore[arg-type]


def _from_format_1(doc: dict[str, Any], tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
    """A format-1 document as format 2: the separate standardiser becomes the estimator's
    ``standardize`` parameter and its ``mean_``/``scale_`` (renamed in ``tensors``, in place)."""
    standardized = bool(doc.get("standardized", False))
    learned = dict(doc["learned"])
    if standardized:
        tensors["mean_"] = tensors.pop("standardizer/mean")
        tensors["scale_"] = tensors.pop("standardizer/scale")
        learned["mean_"] = learned["scale_"] = {"kind": "array"}
    else:
        learned["mean_"] = learned["scale_"] = {"kind": "json", "value": None}
    return {**doc, "version": FORMAT_VERSION, "params": {**doc["params"], "standardize": standardized}, "learned": learned}
