"""The dask cluster a run starts closes without logging: its workers' and its own shutdown chatter."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from diffprobe.pipelines.extraction.cluster import _quiet
from diffprobe.pipelines.extraction.worker_logs import ClosingFilter, closing_quietly, dask_handlers, worker_status

HEARTBEAT_FAILED = "Failed to communicate with scheduler during heartbeat"


def _record(name: str, level: int, msg: str = "m") -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, (), None)


@pytest.mark.parametrize(
    ("status", "name", "level", "kept"),
    [
        ("running", "distributed.worker", logging.ERROR, True),  # a live worker that loses its scheduler: shown
        ("closing", "distributed.worker", logging.ERROR, False),
        ("closed", "distributed.comm.tcp", logging.WARNING, False),
        ("closing_gracefully", "tornado.application", logging.ERROR, False),
        ("closing", "distributed.worker", logging.CRITICAL, True),
        ("closing", "diffprobe.pipelines.extraction.cluster", logging.ERROR, True),  # not dask's
        ("closing", "distributedx", logging.ERROR, True),
    ],
)
def test_a_closing_workers_dask_records_are_dropped(status: str, name: str, level: int, kept: bool):
    worker = SimpleNamespace(status=SimpleNamespace(name=status))
    assert ClosingFilter(worker_status(worker)).filter(_record(name, level)) is kept


@pytest.fixture
def seen() -> Iterator[list[logging.LogRecord]]:
    """The records of level WARNING and above that reach a handler on dask's logger; filters removed after."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.levelno >= logging.WARNING:
                records.append(record)

    handler = Keep()
    logging.getLogger("distributed").addHandler(handler)
    try:
        yield records
    finally:
        for h in dask_handlers():  # this process's workers are gone: so are their filters
            for f in [f for f in h.filters if isinstance(f, ClosingFilter)]:
                h.removeFilter(f)
        logging.getLogger("distributed").removeHandler(handler)


def test_the_runs_own_shutdown_logs_dask_records_as_debug_lines(seen, caplog):
    """E.g. a nanny whose worker is slow to exit: a WARNING after a successful run, without the run's context."""
    nanny = logging.getLogger("distributed.nanny")
    with caplog.at_level(logging.DEBUG, logger="diffprobe"), closing_quietly():
        nanny.warning("Worker process still alive after 4.0 seconds, killing")
    assert seen == []
    assert "dask, while the cluster closes: distributed.nanny: Worker process still alive" in caplog.text
    nanny.warning("after the close")  # the filter is gone again
    assert [r.getMessage() for r in seen] == ["after the close"]


def _close_with_a_heartbeat_in_flight(quiet: bool, seen: list[logging.LogRecord]) -> list[str]:
    """Start an in-process cluster, hold one worker heartbeat at the scheduler, close: the ERROR records."""
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0")
    client = Client(cluster)
    if quiet:
        _quiet(client)
    in_flight = threading.Event()
    answer = cluster.scheduler.handlers["heartbeat_worker"]

    async def slow_answer(*args: Any, **kwargs: Any) -> Any:
        in_flight.set()
        await asyncio.sleep(3)  # the worker closes before the answer comes
        return answer(*args, **kwargs)

    cluster.scheduler.handlers["heartbeat_worker"] = slow_answer
    assert in_flight.wait(20), "no worker heartbeat reached the scheduler"
    client.close()
    cluster.close()
    return [r.getMessage() for r in seen if r.levelno >= logging.ERROR]


def test_workers_a_run_started_close_without_a_heartbeat_error(seen):
    """dask's own behaviour first (so the test can fail), then the run's client with its plugin."""
    assert any(m.startswith(HEARTBEAT_FAILED) for m in _close_with_a_heartbeat_in_flight(False, seen))
    seen.clear()
    assert _close_with_a_heartbeat_in_flight(True, seen) == []
