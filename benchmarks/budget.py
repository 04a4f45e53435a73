"""Wall-time budgets for a benchmark's stages, and the report their figures go to.

A stage gets a :class:`Budget`; :func:`step` runs one measurement within (a share of) what is left
and turns an overrun (SIGALRM → :class:`OverBudget`) or an error into a row, so a stage always ends
with the figures it had. :class:`Progress` times the library's debug records (one per epoch of the
training loop, one per C of the logistic sweep), so a stopped fit still says how far it got.
:class:`Report` prints each row as it is added and appends the rows not yet written to the
``--json`` file as one line (results.py) whenever :meth:`Report.flush` is called. Last, what a
step leaves behind: host and GPU memory.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from results import Row, append

log = logging.getLogger("gpu_probes")


class Report:
    """Every figure of the run, printed as it is added; :meth:`flush` appends the new ones to ``path``."""

    def __init__(self, path: Path | None, benchmark: str, **meta: Any) -> None:
        self.path, self.benchmark, self.meta = path, benchmark, meta
        self.rows: list[Row] = []
        self.flushed = 0

    def add(self, what: str, value: float | None, unit: str, note: str = "") -> None:
        v = None if value is None or not np.isfinite(value) else float(value)
        self.rows.append(Row(what, v, unit, note))
        shown = "—" if v is None else (f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.4g}")
        print(f"  {what:<34} {shown:>10} {unit:<6} {note}", flush=True)

    def flush(self, **meta: Any) -> None:
        """Append the rows added since the last flush as one JSON line (none: nothing is written)."""
        new = self.rows[self.flushed :]
        if new:
            append(self.path, self.benchmark, new, **self.meta, **meta)
        self.flushed = len(self.rows)


class OverBudget(BaseException):
    """Raised by SIGALRM in a step that outlived its budget (a BaseException: library code's
    ``except Exception`` must not swallow it)."""


class Terminated(BaseException):
    """Raised by SIGTERM (a caller's ``timeout``), so the figures are written before the process ends."""


def raise_on_sigterm() -> None:
    def on_term(signum: int, frame: Any) -> None:
        raise Terminated

    signal.signal(signal.SIGTERM, on_term)


class Budget:
    """``seconds`` of wall time from ``start`` (perf_counter; default now), less a ``reserve`` kept for
    writing the figures and deleting the stage's files; :meth:`limit` runs a block with (a share of)
    what is left."""

    def __init__(self, seconds: float, start: float | None = None, reserve: float = 0.0) -> None:
        self.end = (time.perf_counter() if start is None else start) + seconds - reserve

    def left(self) -> float:
        return self.end - time.perf_counter()

    @contextlib.contextmanager
    def limit(self, share: float = 1.0) -> Iterator[None]:
        seconds = self.left() * share
        if seconds <= 0.01:
            raise OverBudget

        def on_alarm(signum: int, frame: Any) -> None:
            raise OverBudget

        previous = signal.signal(signal.SIGALRM, on_alarm)
        signal.setitimer(signal.ITIMER_REAL, seconds)
        try:
            yield
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)


class Progress(logging.Handler):
    """Times of the library's debug records per epoch (training loop) and per C (logistic sweep)."""

    LOGGERS = ("diffprobe.probes.training", "diffprobe.probes.logistic")

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.epochs: list[float] = []
        self.cs: list[float] = []

    def attach(self) -> None:
        """Receive the probes' debug records (other handlers should stay at INFO)."""
        for name in self.LOGGERS:
            logging.getLogger(name).setLevel(logging.DEBUG)
            logging.getLogger(name).addHandler(self)

    def emit(self, record: logging.LogRecord) -> None:
        if record.name == "diffprobe.probes.training" and str(record.msg).startswith("epoch"):
            self.epochs.append(time.perf_counter())
        elif record.name == "diffprobe.probes.logistic" and str(record.msg).startswith("C="):
            self.cs.append(time.perf_counter())

    def reset(self) -> Progress:
        self.epochs, self.cs = [], []
        return self

    def rate(self, t0: float, epochs: int) -> tuple[float, str, str] | None:
        """(seconds, unit, what it means) per epoch or per C value since ``t0``; None before the first."""
        if self.epochs:
            steps = np.diff([t0, *self.epochs])  # the first also holds loading and standardising
            per = float(np.median(steps[1:] if len(steps) > 1 else steps))
            return per, "s/epoch", f"{len(steps)} of {epochs} epochs, {per:.3g} s each → fit ≈ {per * epochs:.0f} s extrapolated"
        if self.cs:
            per = (self.cs[-1] - t0) / len(self.cs)
            return per, "s/C", f"{len(self.cs)} C values of the sweep (≤ 11, then a refit), ~{per:.3g} s each"
        return None


PROGRESS = Progress()


def step(report: Report, budget: Budget, what: str, fn: Callable[[], Any], share: float = 1.0,
         over: Callable[[float], str] | None = None) -> Any:  # fmt: skip
    """``fn()`` within ``share`` of the budget left; an error or an overrun becomes a row and None."""
    if budget.left() <= 0.01:
        report.add(what, None, "s", "skipped: the stage's budget is spent")
        return None
    t0 = time.perf_counter()
    try:
        with budget.limit(share):
            return fn()
    except OverBudget:
        elapsed = time.perf_counter() - t0
        report.add(what, None, "s", over(elapsed) if over else f"over budget: stopped after {elapsed:.1f} s")
    except Exception as e:
        log.exception("%s failed", what)
        report.add(what, None, "s", f"failed: {type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}")
    finally:
        free_memory()
    return None


def free_memory() -> None:
    """Drop what a stopped or finished step left behind (host objects, cached CUDA blocks)."""
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


@contextlib.contextmanager
def gpu_peak(device: Any) -> Iterator[list[str]]:
    """Yields a list that receives ", GPU peak X GiB" for a CUDA device after the block."""
    import torch

    out: list[str] = []
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    yield out
    if device.type == "cuda":
        out.append(f", GPU peak {torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB")


def host_memory() -> int:
    """Bytes of physical memory of this host."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
