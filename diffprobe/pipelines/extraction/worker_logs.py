"""Quiet shutdown of the dask cluster an extraction starts itself.

When a run's units are all written, its LocalCluster closes: the nannies ask their workers to stop
and the scheduler goes. Under load, dask logs what it meets on the way out at WARNING or ERROR:
a worker whose heartbeat was in flight when its connections closed ("Failed to communicate with
scheduler during heartbeat", with two chained tracebacks: about one run in 15 on a busy 2-core
machine), a worker slow to exit ("Worker process still alive after 4.0 seconds, killing"). The run
has succeeded by then, so while a worker closes (in its own process) and while the run closes its
cluster (in this one), dask's records below CRITICAL are dropped; this process keeps them as debug
lines (``-vv``). A worker that is still running logs as before.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin

log = logging.getLogger(__name__)

#: The loggers whose records a closing cluster drops (and their children).
DASK_LOGGERS = ("distributed", "tornado")

#: Worker statuses (distributed.core.Status names) of a worker on its way out.
CLOSING = frozenset({"closing", "closing_gracefully", "closed"})


class ClosingFilter(logging.Filter):
    """Drops dask's records below CRITICAL while ``closing()``; ``keep`` receives each one dropped."""

    def __init__(self, closing: Callable[[], bool], keep: Callable[[logging.LogRecord], None] | None = None) -> None:
        super().__init__()
        self._closing = closing
        self._keep = keep

    def filter(self, record: logging.LogRecord) -> bool:
        ours = record.name.split(".")[0] in DASK_LOGGERS
        if not ours or record.levelno >= logging.CRITICAL or not self._closing():
            return True
        if self._keep is not None:
            self._keep(record)
        return False


def dask_handlers() -> list[logging.Handler]:
    """The handlers dask's records reach: its own (a process without root handlers) or the root's."""
    found: list[logging.Handler] = []
    for name in (*DASK_LOGGERS, ""):
        for h in logging.getLogger(name or None).handlers:
            if h not in found:
                found.append(h)
    return found


def add_filter(f: logging.Filter) -> list[logging.Handler]:
    """Adds ``f`` to every handler dask's records reach; returns them (to remove it again)."""
    handlers = dask_handlers()
    for h in handlers:
        h.addFilter(f)
    return handlers


def worker_status(worker: Any) -> Callable[[], bool]:
    """Whether ``worker`` (anything with a ``.status`` that has a ``.name``) is closing."""
    return lambda: getattr(worker.status, "name", "") in CLOSING


class QuietShutdown(WorkerPlugin):
    """Installs a :class:`ClosingFilter` in each worker, restarted ones too (register it on the client)."""

    name = "diffprobe-quiet-shutdown"

    def setup(self, worker: Any) -> None:
        # Kept after teardown: a worker removes its plugins before it closes its connections.
        add_filter(ClosingFilter(worker_status(worker)))


@contextlib.contextmanager
def closing_quietly() -> Iterator[None]:
    """While the block closes the run's own cluster, dask's records in this process are debug lines."""

    def keep(record: logging.LogRecord) -> None:
        log.debug("dask, while the cluster closes: %s: %s", record.name, record.getMessage())

    f = ClosingFilter(lambda: True, keep)
    handlers = add_filter(f)
    try:
        yield
    finally:
        for h in handlers:
            h.removeFilter(f)
