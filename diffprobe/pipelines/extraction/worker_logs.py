"""Quiet shutdown of the dask workers an extraction starts itself.

When a run ends, its LocalCluster closes each worker. A worker's periodic heartbeat to the scheduler
may be in flight at that moment; closing the worker closes its connections under it, and dask logs
the failed heartbeat as an ERROR with two chained tracebacks (seen about once in 15 runs on a busy
2-core machine). The run itself succeeded, so a worker that is already closing drops that record; a
heartbeat that fails while a worker is still running is still logged.
"""

from __future__ import annotations

import logging
from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin

#: The first words of dask's failed-heartbeat log record (distributed.worker.Worker.heartbeat).
HEARTBEAT_FAILED = "Failed to communicate with scheduler during heartbeat"

#: Worker statuses (distributed.core.Status names) of a worker on its way out.
CLOSING = frozenset({"closing", "closing_gracefully", "closed"})


class ClosingHeartbeatFilter(logging.Filter):
    """Drops the failed-heartbeat record of ``worker`` once it is closing (any ``.status`` with a ``.name``)."""

    def __init__(self, worker: Any) -> None:
        super().__init__()
        self._worker = worker

    def filter(self, record: logging.LogRecord) -> bool:
        closing = getattr(self._worker.status, "name", "") in CLOSING
        return not (closing and str(record.msg).startswith(HEARTBEAT_FAILED))


class QuietShutdown(WorkerPlugin):
    """Installs :class:`ClosingHeartbeatFilter` in each worker, restarted ones too (register it on the client)."""

    name = "diffprobe-quiet-shutdown"

    def setup(self, worker: Any) -> None:
        # Kept after teardown: a worker removes its plugins before it closes its connections.
        logging.getLogger("distributed.worker").addFilter(ClosingHeartbeatFilter(worker))
