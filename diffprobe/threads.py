"""CPU threading policy, applied once per process before torch starts its thread pools.

OpenMP's default wait policy lets idle worker threads spin for a while at every barrier. On a
machine with other work on its cores, the spinning threads take turns away from the threads doing
work: measured on 2 shared cores, the demo took 14 min 18 s with the defaults and 3 min 53 s with
``OMP_WAIT_POLICY=PASSIVE``. So every diffprobe command (and every process it starts: loader
workers, dask workers, which inherit the environment) uses a passive wait policy and one thread per
core *available to this process* (``os.sched_getaffinity``: a cgroup or ``taskset`` limit counts,
the machine's other cores do not) that is idle when the command starts (sampled from ``/proc/stat``
for a tenth of a second): two OpenMP threads on two cores of which another process keeps one busy
wait at every barrier for the one that was preempted, while one thread runs at full speed.
``diffprobe --threads N`` and ``--busy-wait`` override it; variables already set in the environment
are never overridden.

Work made of independent pieces (a CPU extraction's forward batches) runs :func:`streams` of them at
once, each on its own thread with its share of the pool's threads: a stream that is preempted stalls
only itself, where one forward's threads wait for each other at every operator. The streams use the
cores this process may use (:func:`cpu_cores`: ``--threads``, a user's ``OMP_NUM_THREADS``, else the
affinity mask), not only the idle ones: two streams on two cores of which another process keeps one
busy share three runnable threads fairly, and no stream waits for another.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass

log = logging.getLogger(__name__)

#: The environment of a passive (non-spinning) OpenMP runtime: GNU libgomp and Intel's (MKL's).
PASSIVE = {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "0", "KMP_BLOCKTIME": "0"}
#: The variables that set a thread pool's size.
COUNTS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
#: The cores this process may keep busy, as the CLI resolved them (``--threads``, a user's
#: ``OMP_NUM_THREADS``, else the affinity mask); read by :func:`cpu_cores`, inherited by subprocesses.
CORES_VAR = "DIFFPROBE_CORES"
#: At most this many independent streams of work at once (each holds one forward's activations).
MAX_STREAMS = 4


def available_cores() -> int:
    """Cores this process may run on (its affinity mask), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def _cpu_times() -> tuple[int, int] | None:
    """(idle, total) jiffies of all CPUs from /proc/stat, or None where there is none."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    return fields[3] + (fields[4] if len(fields) > 4 else 0), sum(fields[:8])


def idle_cores(sample: float = 0.1) -> float | None:
    """How many of the machine's cores were idle over the next ``sample`` seconds (None: unknown)."""
    first = _cpu_times()
    if first is None:
        return None
    time.sleep(sample)
    second = _cpu_times()
    if second is None or second[1] <= first[1]:
        return None
    return (os.cpu_count() or 1) * (second[0] - first[0]) / (second[1] - first[1])


def _positive(value: str | None) -> int | None:
    try:
        n = int(value) if value else 0
    except ValueError:
        return None
    return n if n >= 1 else None


def cpu_cores() -> int:
    """The cores this process may keep busy: ``DIFFPROBE_CORES`` (the CLI sets it), else a user's
    ``OMP_NUM_THREADS``, else :func:`available_cores`."""
    return _positive(os.environ.get(CORES_VAR)) or _positive(os.environ.get("OMP_NUM_THREADS")) or available_cores()


def streams(cores: int | None = None) -> int:
    """Independent streams of work to run at once on ``cores`` (default :func:`cpu_cores`): one per
    core, at most :data:`MAX_STREAMS`."""
    return max(1, min(MAX_STREAMS, cores if cores is not None else cpu_cores()))


@dataclass(frozen=True)
class ThreadPolicy:
    """How a process uses the CPU: ``threads`` per pool, and whether idle threads may spin
    (``busy_wait``); ``cores``: the cores it may keep busy with independent streams (:func:`streams`)."""

    threads: int
    busy_wait: bool = False
    cores: int | None = None

    @classmethod
    def default(cls, threads: int | None = None, busy_wait: bool = False) -> ThreadPolicy:
        """``threads`` (None: the available cores that are idle now, at least one), passive unless ``busy_wait``."""
        if threads is not None and threads < 1:
            from diffprobe.errors import ConfigError

            raise ConfigError(f"expected --threads ≥ 1, got {threads}")
        user = _positive(os.environ.get("OMP_NUM_THREADS"))  # the environment wins (see apply)
        if threads is not None:
            return cls(threads, busy_wait, user or threads)
        cores = user or available_cores()
        idle = idle_cores() if cores > 1 else None
        threads = cores if idle is None else max(1, min(cores, int(idle + 0.25)))
        return cls(threads, busy_wait, cores)

    def environment(self) -> dict[str, str]:
        """The variables this policy sets (where the environment does not already)."""
        env = {name: str(self.threads) for name in COUNTS}
        if self.cores is not None:
            env[CORES_VAR] = str(self.cores)
        if not self.busy_wait:
            env.update(PASSIVE)
        return env

    def apply(self) -> dict[str, str]:
        """Set the policy's variables that are not already set: the thread pools read them when they
        start (the CLI applies the policy before anything imports torch; processes it starts inherit it).

        Returns the variables it set (those already in the environment are left alone: a user's
        ``OMP_NUM_THREADS`` wins).
        """
        applied = {}
        for name, value in self.environment().items():
            if name not in os.environ:
                os.environ[name] = value
                applied[name] = value
        log.debug("thread policy: %s (set %s)", self, applied or "nothing: already in the environment")
        return applied
