"""Ctrl-C and SIGTERM during an extraction: stop between units, and never lose the signal.

Python raises KeyboardInterrupt wherever the main thread is when the signal arrives; when that is
inside a callback whose exceptions are ignored (an at-fork handler while a loader worker starts, a
finaliser), the interrupt is printed and dropped and the run would go on to the end. The handler
here also records the signal, and the run checks it (:func:`check`) at every forward batch, so a
dropped interrupt still stops the run at the next one.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

_pending: int | None = None


@contextlib.contextmanager
def signals_as_interrupt() -> Iterator[None]:
    """SIGINT and SIGTERM raise KeyboardInterrupt("signal N") and are remembered until the block ends
    (main thread only; elsewhere nothing changes)."""
    global _pending
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        global _pending
        _pending = signum
        raise KeyboardInterrupt(f"signal {signum}")

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    _pending = None
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        _pending = None


def check() -> None:
    """Raise the KeyboardInterrupt of a signal that arrived but was swallowed where it was raised."""
    if _pending is not None:
        raise KeyboardInterrupt(f"signal {_pending}")
