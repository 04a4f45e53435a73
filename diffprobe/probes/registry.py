"""The probe registry: name → estimator class, resolved lazily so listing names imports no torch."""

from __future__ import annotations

import importlib
from typing import Any

from diffprobe.probes.errors import ProbeError

#: Probe name → "module:Class". Add a probe by adding a line here (and a module beside this one).
PROBES: dict[str, str] = {
    "logistic": "diffprobe.probes.logistic:LogisticProbe",
    "linear": "diffprobe.probes.linear:LinearProbe",
    "knn": "diffprobe.probes.knn:KNNProbe",
    "attention": "diffprobe.probes.attention:AttentionProbe",
    "difformer": "diffprobe.probes.attention:DifFormerProbe",
}


#: Probes that train on images, running the U-Net in their training loop (not on a store's features):
#: ``diffprobe probe NAME DATA …`` has its own command, and sweeps do not offer them.
IMAGE_PROBES: dict[str, str] = {
    "difffeed": "diffprobe.probes.difffeed:DifFeedProbe",
}


def _target(name: str) -> str:
    if name in PROBES:
        return PROBES[name]
    if name in IMAGE_PROBES:
        return IMAGE_PROBES[name]
    raise ProbeError(f"unknown probe {name!r}; valid: {', '.join([*PROBES, *IMAGE_PROBES])}")


def probe_names() -> list[str]:
    """Registered probe names, in registry order."""
    return list(PROBES)


def register_probe(name: str, target: str) -> None:
    """Register (or replace) ``name`` → ``"module:Class"``."""
    if ":" not in target:
        raise ProbeError(f"expected a target of the form 'module:Class', got {target!r}")
    PROBES[name] = target


def probe_class(name: str) -> type:
    """The estimator class registered as ``name``."""
    module, _, cls = _target(name).partition(":")
    return getattr(importlib.import_module(module), cls)


def probe_name_of(estimator: Any) -> str:
    """The registry name of an estimator instance (or its class name when unregistered)."""
    cls = type(estimator)
    for name, target in {**PROBES, **IMAGE_PROBES}.items():
        if target == f"{cls.__module__}:{cls.__qualname__}":
            return name
    return cls.__qualname__


def create_probe(name: str, **params: Any) -> Any:
    """A new estimator ``name`` with hyper-parameters ``params`` (unknown ones are refused)."""
    cls = probe_class(name)
    valid = sorted(cls().get_params())
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise ProbeError(f"unknown parameter(s) {', '.join(unknown)} for probe {name!r}; valid: {', '.join(valid)}")
    return cls(**params)
