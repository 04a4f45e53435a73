"""Ctrl-C and SIGTERM during an extraction: stop between units, and never lose the signal.

Python raises KeyboardInterrupt wherever the main thread is when the signal arrives; when that is
inside a callback whose exceptions are ignored (an at-fork handler while a loader worker starts, a
finaliser), the interrupt is printed and dropped and the run would go on to the end. The handler
here also records the signal, and the run checks it (:func:`check`) at every forward batch, so a
dropped interrupt still stops the run at the next one, and its "Exception ignored" report is not
printed (a debug line instead).
"""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
import threading
from collections.abc import Iterator
from types import TracebackType
from typing import Any

log = logging.getLogger(__name__)

_pending: int | None = None


@contextlib.contextmanager
def signals_as_interrupt() -> Iterator[None]:
    """SIGINT and SIGTERM raise KeyboardInterrupt("signal N") and are remembered until the block ends
    (main thread only; elsewhere nothing changes). A signal the process was started ignoring stays
    ignored (``nohup``, a background job of a script): whoever started it asked for that."""
    global _pending
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        global _pending
        _pending = signum
        raise KeyboardInterrupt(f"signal {signum}")

    unraisable = sys.unraisablehook

    def quiet(info: Any) -> None:
        # The interrupt raised inside an at-fork handler or a finaliser: Python prints it ("Exception
        # ignored in …", with a traceback) and drops it; it is recorded, and check() raises it again.
        if isinstance(info.exc_value, KeyboardInterrupt) and _pending is not None:
            log.debug("an interrupt raised in %r is raised again at the next check", info.object)
            return
        unraisable(info)

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM) if signal.getsignal(s) is not signal.SIG_IGN}
    sys.unraisablehook = quiet
    _pending = None
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        sys.unraisablehook = unraisable
        _pending = None


def check() -> None:
    """Raise the KeyboardInterrupt of a signal that arrived but was swallowed where it was raised."""
    if _pending is not None:
        raise KeyboardInterrupt(f"signal {_pending}")


#: A loader worker that stops while it hands a batch's shared memory over: the connection errors the
#: main process's resource-sharing thread (multiprocessing's ``resource_sharer._serve``) then prints.
_HANDOVER_ERRORS = (ConnectionResetError, BrokenPipeError, EOFError)


def quiet_loader_handover_errors() -> None:
    """From now on in this process, a connection error in multiprocessing's resource-sharing thread
    is a debug line, not a traceback.

    DataLoader workers hand each batch's tensors to the main process through that thread. When a run
    stops (Ctrl-C, an error), its workers are stopped, and one stopped mid-handover resets the
    connection: the thread then prints a traceback through ``sys.excepthook`` (it does not when the
    interpreter is already exiting) after the run has said it stopped cleanly. Nothing is lost — the
    batch belonged to a unit that is redone — so it is logged at debug level. Any other exception, and
    any exception in another thread, is printed as before. Idempotent.
    """
    if getattr(sys.excepthook, "_diffprobe_quiet", False):
        return
    previous = sys.excepthook

    def hook(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
        if issubclass(kind, _HANDOVER_ERRORS) and threading.current_thread().name.endswith("(_serve)"):
            log.debug("a loader worker stopped while handing over a batch: %s", value)
            return
        previous(kind, value, tb)

    hook._diffprobe_quiet = True  # type: ignore[attr-defined]
    sys.excepthook = hook
    unraisable = sys.unraisablehook

    def half_built(info: Any) -> None:
        # An interrupt while a loader iterator was starting its workers leaves it half built; its
        # finaliser then fails on a missing attribute, after the run has said it stopped.
        if isinstance(info.exc_value, AttributeError) and "DataLoaderIter.__del__" in getattr(info.object, "__qualname__", ""):
            log.debug("a loader interrupted while it started: %s", info.exc_value)
            return
        unraisable(info)

    sys.unraisablehook = half_built
