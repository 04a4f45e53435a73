"""The backbone protocol's static half: what a model family knows before any weight is loaded.

A **family** (ADM, diffusers, …) turns a model name, flags and a checkpoint into a
:class:`ModelSpec` — block table measured on the meta device, noise schedule length, the input
size and the shape of the space noise is added in, and its part of a store's identity — and loads a
:class:`~diffprobe.extract.backbone.Backbone` (the dynamic half: early-exit features, the input
transform, conditioning). Adding a family is one module with a :class:`Family` subclass decorated
with :func:`register_family`, plus presets if it has named models.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from diffprobe.extract.spec import Conditioning, ModelSpec
from diffprobe.registry import Registry

if TYPE_CHECKING:
    import torch

    from diffprobe.extract.backbone import Backbone
    from diffprobe.extract.presets import Preset


class Family(abc.ABC):
    """One kind of model: how to describe, check and load it."""

    name: ClassVar[str]
    #: one line for ``--flags`` help and errors: the flags this family understands
    flags_help: ClassVar[str] = ""

    @abc.abstractmethod
    def spec(self, model: str, preset: Preset | None, flags: Mapping[str, Any], checkpoint: Path | None) -> ModelSpec:
        """Describe the model (no weights loaded; blocks measured on the meta device).

        Raises:
            ConfigError: unknown flag or unusable configuration.  CheckpointError: the checkpoint
                cannot describe the model (missing config files …).
        """

    @abc.abstractmethod
    def check(self, spec: ModelSpec, checkpoint: Path | None, cond: Conditioning) -> None:
        """Everything that can be checked before loading: the checkpoint fits, the conditioning is valid."""

    @abc.abstractmethod
    def load(self, spec: ModelSpec, checkpoint: Path | None, device: torch.device, dtype: torch.dtype, cond: Conditioning) -> Backbone:
        """The backbone with its weights (random, seeded, when ``checkpoint`` is None)."""

    @abc.abstractmethod
    def checkpoint_sha256(self, spec: ModelSpec, checkpoint: Path, cond: Conditioning) -> str:
        """A hash of the weights (and whatever else of the checkpoint shapes the values)."""

    def cond_identity(self, spec: ModelSpec, cond: Conditioning) -> dict[str, Any]:
        """The conditioning's fields of a store's identity."""
        return {"class_label": cond.class_label}

    def weights(self, spec: ModelSpec, checkpoint: Path | None, cond: Conditioning, dtype: torch.dtype) -> WeightBytes:
        """Bytes of the weights a run loads at ``dtype`` (the precision it computes in), without
        loading them: ``resident`` stays on the device while extracting, ``transient`` is loaded once
        before (text encoders) and freed, one part at a time. Default: nothing known."""
        return WeightBytes({}, {})


@dataclass(frozen=True)
class WeightBytes:
    """A model's weights by part, in bytes: ``resident`` during extraction, ``transient`` before it."""

    resident: dict[str, int]
    transient: dict[str, int]


def parameter_bytes(module: torch.nn.Module, dtype: torch.dtype) -> int:
    """Bytes of ``module``'s parameters and buffers at ``dtype`` (floating ones; others as they are);
    counts a module built on the meta device."""
    size = dtype.itemsize
    return sum(t.numel() * (size if t.is_floating_point() else t.element_size()) for t in (*module.parameters(), *module.buffers()))


#: Every model family by name (one instance each).
FAMILIES: Registry[Family] = Registry("backbone family", sort=True)


def register_family(cls: type[Family]) -> type[Family]:
    """Class decorator: make the family available by its ``name`` (``--model NAME`` and presets)."""
    FAMILIES.register(cls.name, cls())
    return cls


def get_family(name: str) -> Family:
    """The family called ``name``."""
    return FAMILIES.get(name)
