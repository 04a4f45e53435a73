"""Forward streams: a CPU extraction computes several forward batches at once, each on its own thread."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import torch

from diffprobe.threads import streams as cpu_streams

log = logging.getLogger(__name__)


def forward_streams(device_type: str, compile: bool) -> int:
    """Forward batches computed at once on a ``device_type`` device (``compile``: through torch.compile): on a CPU, one per core this process may use (at most
    :data:`~diffprobe.threads.MAX_STREAMS`), each on its own thread; 1 on a GPU (the host overlaps
    filing with the device instead) and with torch.compile.

    One forward's threads wait for each other at every operator, so one of them preempted by another
    process stalls the forward; independent forwards do not wait for each other. Measured on the
    project's 2-core VM (48 forwards of 16 images through the 32×32 ADM to block 19): one forward at
    a time on 2 threads 23.2 s, two at a time on 1 thread each 20.8 s; beside a busy process 43.6 s
    (40.5 s on 1 thread) against 29.1 s. Each forward computes the same bytes whichever thread runs it.
    """
    if device_type != "cpu" or compile:
        return 1
    return cpu_streams()


@contextmanager
def stream_pool(n: int) -> Iterator[ThreadPoolExecutor | None]:
    """``n`` forward threads sharing this process's intra-op threads (None for one stream: forwards
    run in the calling thread). torch's thread count is restored afterwards; queued forwards are
    cancelled and running ones finished on the way out (an interrupt, an error)."""
    if n <= 1:
        yield None
        return
    saved = torch.get_num_threads()
    per_stream = max(1, saved // n)
    log.info("%d forward streams, %d thread(s) each", n, per_stream)
    pool = ThreadPoolExecutor(n, thread_name_prefix="forward", initializer=torch.set_num_threads, initargs=(per_stream,))
    try:
        yield pool
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        torch.set_num_threads(saved)
