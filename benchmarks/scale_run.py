"""One stage of benchmarks/scale.py in a fresh process: ``python scale_run.py RESULT [--scheduler] -- ARGS…``.

Imports what the commands import (torch, zarr, dask, the CLI), resets the peak-RSS mark (VmHWM) to
the RSS after those imports, runs ``diffprobe ARGS…`` in this process (click, not a shell), and writes
one JSON object to RESULT: ``seconds`` (the command alone, imports excluded), ``peak_mib`` (VmHWM at
the end: the process's peak resident memory), ``import_mib`` (its RSS once imported) and ``rc``.

With ``--scheduler`` a thread also watches the dask scheduler of a LocalCluster (it lives in this,
the client's, process): the RSS when the scheduler started, the most tasks it held at once, every
task key it saw and how many tasks ran more than once (rescheduled after a worker died).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any


def status_mib(field: str) -> float:
    """A kB field of /proc/self/status (Linux), in MiB."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":")) / 1024


class SchedulerWatch(threading.Thread):
    """Samples the in-process dask scheduler every ``interval`` seconds until ``stop`` is set."""

    def __init__(self, interval: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.interval = interval
        self.stop = threading.Event()
        self.scheduler: Any = None
        self.rss_at_start: float | None = None
        self.max_tasks = 0

    def run(self) -> None:
        from distributed import Scheduler

        while not self.stop.wait(self.interval):
            if self.scheduler is None:
                found = list(Scheduler._instances)
                if found:
                    self.scheduler, self.rss_at_start = found[0], status_mib("VmRSS")
            if self.scheduler is not None:
                self.max_tasks = max(self.max_tasks, len(self.scheduler.tasks))

    def figures(self) -> dict[str, Any]:
        """What the scheduler did (read after it closed, so its state no longer moves)."""
        if self.scheduler is None:
            return {"scheduler_seen": False}
        processing: dict[str, int] = {}
        for entry in list(self.scheduler.transition_log):  # (key, start, finish, recommendations, stimulus, time)
            if entry[2] == "processing":
                processing[str(entry[0])] = processing.get(str(entry[0]), 0) + 1
        return {"scheduler_seen": True, "rss_at_start_mib": self.rss_at_start, "max_tasks": self.max_tasks,
                "tasks": len(processing), "rescheduled": sum(1 for n in processing.values() if n > 1)}  # fmt: skip


def main() -> None:
    result, rest = sys.argv[1], sys.argv[2:]
    watch = rest[0] == "--scheduler"
    args = rest[rest.index("--") + 1 :]
    import dask.array  # noqa: F401  (imported before the peak is reset: every stage pays them alike)
    import torch  # noqa: F401
    import zarr  # noqa: F401

    from diffprobe.cli import main as cli

    if watch:
        import distributed  # noqa: F401
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current RSS: imports do not count
    before = status_mib("VmRSS")
    watcher = SchedulerWatch() if watch else None
    if watcher:
        watcher.start()
    t0 = time.perf_counter()
    rc: Any = 0
    try:
        ret = cli.main(args, prog_name="diffprobe", standalone_mode=False)  # ctx.exit(n) returns n here
        rc = ret if isinstance(ret, int) else 0
    except SystemExit as e:
        rc = e.code
    except Exception as e:  # noqa: BLE001  (the stage failed: say so in the result, the caller reports it)
        rc = f"{type(e).__name__}: {e}"
    seconds = time.perf_counter() - t0
    out = {"seconds": seconds, "peak_mib": status_mib("VmHWM"), "import_mib": before, "rc": rc}
    if watcher:
        watcher.stop.set()
        watcher.join()
        out.update(watcher.figures())
    with open(result, "w") as f:
        json.dump(out, f)


if __name__ == "__main__":
    main()
