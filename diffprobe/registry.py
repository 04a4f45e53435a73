"""One way to register: every registry of diffprobe (model families, presets, probes, heads,
optimisers, schedules, kernels, estimators, backends, data sources, …) is a :class:`Registry`.

A registry maps a name to an object, or to a ``"module:attribute"`` target imported on first use
(so that listing probe names imports no torch). :meth:`Registry.get` of an unknown name raises the
registry's error type with one message shape everywhere: ``unknown probe 'logstic'; valid:
attention, difformer, knn, linear, logistic (did you mean 'logistic'?)``.
"""

from __future__ import annotations

import difflib
import importlib
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar, overload

from diffprobe.errors import ConfigError, DiffprobeError

T = TypeVar("T")
_IMPORTING = threading.RLock()


def _new_lock_after_fork() -> None:
    global _IMPORTING
    _IMPORTING = threading.RLock()  # another thread may have held it at the fork


os.register_at_fork(after_in_child=_new_lock_after_fork)


def nearest(name: str, valid: list[str] | tuple[str, ...]) -> str | None:
    """The valid name closest to ``name`` (a typo's likely intent), or None when nothing is close."""
    hits = difflib.get_close_matches(str(name), list(valid), n=1, cutoff=0.6)
    if not hits:
        lowered = {v.lower(): v for v in valid}
        hits = difflib.get_close_matches(str(name).lower(), list(lowered), n=1, cutoff=0.6)
        hits = [lowered[h] for h in hits]
    return hits[0] if hits else None


def unknown_name_message(what: str, name: object, valid: list[str] | tuple[str, ...], hint: str = "") -> str:
    """``unknown WHAT 'NAME'; valid: a, b, c (did you mean 'b'?)[; HINT]``: the one wording of an unknown name."""
    guess = nearest(str(name), valid)
    mean = f" (did you mean {guess!r}?)" if guess is not None else ""
    tail = f"; {hint}" if hint else ""
    return f"unknown {what} {name!r}; valid: {', '.join(valid) or 'none'}{mean}{tail}"


class Registry(Generic[T]):
    """Names → objects (or lazily imported ``"module:attribute"`` targets), in registration order.

    Args:
        what: what an entry is, for messages ("probe", "model family", …).
        error: the exception :meth:`get` raises for an unknown name (a :class:`DiffprobeError`).
        hint: a sentence appended to that error (where to find the valid names, say).
        sort: list names sorted (True) or in registration order (False).
    """

    def __init__(self, what: str, *, error: type[DiffprobeError] = ConfigError, hint: str = "", sort: bool = False) -> None:
        self.what = what
        self.error = error
        self.hint = hint
        self.sort = sort
        self._order: list[str] = []
        self._entries: dict[str, Any] = {}
        self._lazy: dict[str, str] = {}

    # --- registering -----------------------------------------------------------------------
    @overload
    def register(self, name: str) -> Callable[[T], T]: ...

    @overload
    def register(self, name: str, obj: T, *, replace: bool = False) -> T: ...

    def register(self, name: str, obj: Any = None, *, replace: bool = False) -> Any:
        """``registry.register("name", obj)``, or ``@registry.register("name")`` on a class or function.

        A name registered twice is an error unless ``replace``.
        """
        if obj is None:
            return lambda target: self.register(name, target, replace=replace)
        self._claim(name, replace)
        self._entries[name] = obj
        return obj

    def register_lazy(self, name: str, target: str, *, replace: bool = False) -> None:
        """Register ``"module:attribute"``, imported the first time :meth:`get` asks for ``name``."""
        if ":" not in target:
            raise ConfigError(f"expected a target of the form 'module:attribute', got {target!r}")
        self._claim(name, replace)
        self._lazy[name] = target

    def remove(self, name: str) -> None:
        """Forget ``name`` (a plug-in that is unloaded, a test's own entry)."""
        if name not in self:
            raise self.unknown(name)
        self._entries.pop(name, None)
        self._lazy.pop(name, None)
        self._order.remove(name)

    __delitem__ = remove

    def _claim(self, name: str, replace: bool) -> None:
        if not replace and name in self:
            raise ConfigError(f"{self.what} {name!r} is already registered")
        self._entries.pop(name, None)
        self._lazy.pop(name, None)
        if name not in self._order:
            self._order.append(name)

    # --- looking up -------------------------------------------------------------------------
    def get(self, name: str) -> T:
        """The entry ``name``; an unknown name raises :attr:`error` listing the valid ones."""
        if name in self._entries:
            return self._entries[name]  # type: ignore[no-any-return]
        with _IMPORTING:  # threads (a dask worker's decoding pool) may ask for one lazy entry at once
            if name in self._entries:
                return self._entries[name]  # type: ignore[no-any-return]
            if name in self._lazy:
                module, _, attr = self._lazy[name].partition(":")
                value = getattr(importlib.import_module(module), attr)
                self._entries[name] = value
                del self._lazy[name]
                return value  # type: ignore[no-any-return]
        raise self.unknown(name)

    def unknown(self, name: object) -> DiffprobeError:
        """The error for a name that is not registered (for callers that check before :meth:`get`)."""
        return self.error(unknown_name_message(self.what, name, self.names(), self.hint))

    def target(self, name: str) -> str | None:
        """The ``"module:attribute"`` of an entry (lazy or not: objects with a module and a name), or None."""
        if name in self._lazy:
            return self._lazy[name]
        obj = self._entries.get(name)
        module, qual = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
        return f"{module}:{qual}" if module and qual else None

    def name_of(self, obj: Any) -> str | None:
        """The name under which ``obj`` (or ``obj``'s class) is registered, without importing lazy entries."""
        for cls in (obj, type(obj)):
            module, qual = getattr(cls, "__module__", None), getattr(cls, "__qualname__", None)
            for name in self.names():
                if self._entries.get(name) is cls or (module and qual and self.target(name) == f"{module}:{qual}"):
                    return name
        return None

    def names(self) -> list[str]:
        """Every registered name (sorted, or in registration order)."""
        return sorted(self._order) if self.sort else list(self._order)

    def items(self) -> list[tuple[str, T]]:
        """(name, entry) pairs; lazy entries are imported."""
        return [(n, self.get(n)) for n in self.names()]

    def values(self) -> list[T]:
        """Every entry, in :meth:`names` order; lazy entries are imported."""
        return [self.get(n) for n in self.names()]

    def __contains__(self, name: object) -> bool:
        return name in self._entries or name in self._lazy

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def __repr__(self) -> str:
        return f"Registry({self.what!r}: {', '.join(self.names())})"
