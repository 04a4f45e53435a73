"""The probe registries: name → estimator class, imported on first use so that listing names imports no torch.

Add a probe by writing its module beside this one and adding one ``register_lazy`` line below.
"""

from __future__ import annotations

from typing import Any

from diffprobe.probes.errors import ProbeError
from diffprobe.registry import Registry

#: Probes trained on a store's cached features: ``diffprobe probe NAME STORE``, ``diffprobe sweep --probe NAME``.
PROBES: Registry[type] = Registry("probe", error=ProbeError)
PROBES.register_lazy("logistic", "diffprobe.probes.logistic:LogisticProbe")
PROBES.register_lazy("linear", "diffprobe.probes.linear:LinearProbe")
PROBES.register_lazy("knn", "diffprobe.probes.knn:KNNProbe")
PROBES.register_lazy("attention", "diffprobe.probes.attention:AttentionProbe")
PROBES.register_lazy("difformer", "diffprobe.probes.attention:DifFormerProbe")

#: Probes that train on images, running the U-Net in their training loop (not on a store's features):
#: ``diffprobe probe NAME DATA …`` has its own command, and sweeps do not offer them.
IMAGE_PROBES: Registry[type] = Registry("image probe", error=ProbeError)
IMAGE_PROBES.register_lazy("difffeed", "diffprobe.probes.difffeed:DifFeedProbe")


#: Probes of feature maps and segmentation masks: ``diffprobe probe dense STORE`` (per-pixel classes).
DENSE_PROBES: Registry[type] = Registry("dense probe", error=ProbeError)
DENSE_PROBES.register_lazy("dense", "diffprobe.probes.dense.estimator:DenseProbe")

_KINDS = (PROBES, IMAGE_PROBES, DENSE_PROBES)


def is_probe(name: str) -> bool:
    """Whether ``name`` is a registered probe of any kind."""
    return any(name in reg for reg in _KINDS)


def check_probe_name(name: str) -> None:
    """Raise :class:`ProbeError` (listing both kinds) unless ``name`` is a registered probe."""
    if not is_probe(name):
        from diffprobe.registry import unknown_name_message

        raise ProbeError(unknown_name_message("probe", name, [n for reg in _KINDS for n in reg.names()]))


def probe_names() -> list[str]:
    """Registered feature-probe names, in registry order."""
    return PROBES.names()


def probe_class(name: str) -> type:
    """The estimator class registered as ``name`` (either kind)."""
    check_probe_name(name)
    return next(reg for reg in _KINDS if name in reg).get(name)


def probe_name_of(estimator: Any) -> str:
    """The registry name of an estimator instance (or its class name when unregistered)."""
    return next((n for reg in _KINDS if (n := reg.name_of(estimator))), type(estimator).__qualname__)


def create_probe(name: str, **params: Any) -> Any:
    """A new estimator ``name`` with hyper-parameters ``params`` (unknown ones are refused)."""
    cls = probe_class(name)
    valid = sorted(cls().get_params())
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise ProbeError(f"unknown parameter(s) {', '.join(unknown)} for probe {name!r}; valid: {', '.join(valid)}")
    return cls(**params)
