"""Lazy package attributes (PEP 562), so that ``import diffprobe`` and ``diffprobe --help`` do not
import torch."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, exports: Mapping[str, str], names: list[str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``: each name in ``exports`` is imported from its
    module on first use and cached in the package's namespace.

    Args:
        exports: {attribute name: module that defines it}.
        names: the package's ``__all__`` (what ``dir()`` lists).
    """
    import sys

    def __getattr__(name: str) -> Any:
        if name in exports:
            value = getattr(importlib.import_module(exports[name]), name)
            setattr(sys.modules[package], name, value)
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(names)

    return __getattr__, __dir__
