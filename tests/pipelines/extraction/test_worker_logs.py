"""A dask worker that closes with a heartbeat in flight logs no ERROR once the run has ended."""

from __future__ import annotations

import asyncio
import logging
import threading
from types import SimpleNamespace
from typing import Any

import pytest

from diffprobe.pipelines.extraction.cluster import _quiet
from diffprobe.pipelines.extraction.worker_logs import HEARTBEAT_FAILED, ClosingHeartbeatFilter


def _record(msg: str) -> logging.LogRecord:
    return logging.LogRecord("distributed.worker", logging.ERROR, __file__, 1, msg, (), None)


@pytest.mark.parametrize(
    ("status", "msg", "kept"),
    [
        ("running", HEARTBEAT_FAILED + ".", True),  # a live worker that loses its scheduler: the user must see it
        ("closing", HEARTBEAT_FAILED + ".", False),
        ("closed", HEARTBEAT_FAILED + ".", False),
        ("closing_gracefully", HEARTBEAT_FAILED + ".", False),
        ("closing", "Compute Failed", True),  # any other record of a closing worker
    ],
)
def test_only_a_closing_workers_failed_heartbeat_is_dropped(status: str, msg: str, kept: bool):
    worker = SimpleNamespace(status=SimpleNamespace(name=status))
    assert ClosingHeartbeatFilter(worker).filter(_record(msg)) is kept


def _close_with_a_heartbeat_in_flight(quiet: bool) -> list[str]:
    """Start an in-process cluster, hold one worker heartbeat at the scheduler, close: the ERROR records."""
    from distributed import Client, LocalCluster

    seen: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.levelno >= logging.ERROR:
                seen.append(record.getMessage())

    handler = Keep()
    logging.getLogger("distributed").addHandler(handler)
    try:
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
    finally:
        logging.getLogger("distributed").removeHandler(handler)
        for f in list(logging.getLogger("distributed.worker").filters):  # this process's workers are gone
            if isinstance(f, ClosingHeartbeatFilter):
                logging.getLogger("distributed.worker").removeFilter(f)
    return seen


def test_workers_a_run_started_close_without_a_heartbeat_error():
    """dask's own behaviour first (so the test can fail), then the run's client with its plugin."""
    assert any(m.startswith(HEARTBEAT_FAILED) for m in _close_with_a_heartbeat_in_flight(quiet=False))
    assert _close_with_a_heartbeat_in_flight(quiet=True) == []
