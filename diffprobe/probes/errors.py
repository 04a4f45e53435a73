"""Errors raised by the probes: bad probe names, parameters, labels or feature layouts."""

from __future__ import annotations

from diffprobe.errors import DiffprobeError


class ProbeError(DiffprobeError, ValueError):
    """A probe cannot be built, trained or applied with the given data or options."""


class LabelError(ProbeError):
    """A split has no labels (or too few) for what was asked of it."""
