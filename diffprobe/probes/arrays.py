"""Row-chunked access to feature matrices that may live in memory or on disk.

Probes accept either an in-memory array (numpy / torch) or a *chunked* one — anything with ``shape``
and row slicing such as a dask, zarr or h5py array — and then read it ``chunk`` rows at a time, so an
array larger than memory is streamed instead of loaded.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import logging
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch import Tensor

log = logging.getLogger(__name__)


def is_in_memory(X: Any) -> bool:
    """True for numpy arrays and torch tensors; False for lazy/chunked arrays (dask, zarr, h5py)."""
    return isinstance(X, (np.ndarray, Tensor))


def as_numpy(block: Any) -> np.ndarray:
    """A float32 numpy copy/view of ``block`` (computing it first if it is a dask array)."""
    if isinstance(block, Tensor):
        return block.detach().cpu().float().numpy()
    if hasattr(block, "compute"):
        block = block.compute()
    return np.asarray(block, dtype=np.float32)


def row_chunks(X: Any, chunk: int) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(start, rows)`` with ``rows`` a float32 array of at most ``chunk`` rows of ``X``
    (of a chunked X, each read after the last one's memory is given back: :func:`release_freed`)."""
    n = int(X.shape[0])
    lazy = not is_in_memory(X)
    for start in range(0, n, max(1, int(chunk))):
        yield start, as_numpy(X[start : start + chunk])
        if lazy:
            release_freed()


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim  # type: ignore[no-any-return]
    except (OSError, AttributeError):  # not glibc
        return None


def release_freed() -> None:
    """Give memory the process freed back to the system (glibc's ``malloc_trim``; elsewhere nothing).

    Streaming a chunked array allocates and frees the same few sizes of blocks (dask's reads of
    each stored chunk, 8–16 MiB for 4,096 rows of 1,024 features) on several threads; glibc keeps
    freed blocks of under 32 MiB in per-thread arenas, where they fragment, so the resident memory
    of a pass grew with the number of chunks it read: 1.28M rows × 1,024 features peaked 320 MiB
    higher than 100k rows. Called between chunks, a few milliseconds each."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def to_tensor(X: Any, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> Tensor:
    """``X`` as a tensor on ``device`` (a chunked array is read in full: call only when it fits)."""
    if isinstance(X, Tensor):
        return X.to(device=device, dtype=dtype)
    return torch.from_numpy(as_numpy(X)).to(device=device, dtype=dtype)


class RowSubset:
    """Rows ``rows`` (increasing) of a chunked array X, as ``X[rows]`` would give them, read from
    contiguous windows of X: dask's fancy index would hold ~20 bytes per selected row in its graph
    (24 MiB for a 90% hold-out split of 1.28M rows), this holds the row numbers.

    Only what the probes ask of a chunked array: ``shape``, ``ndim``, ``dtype``, ``len`` and
    row slices (``subset[a:b]``, a numpy array), read ``window`` rows of X at a time.
    """

    def __init__(self, X: Any, rows: np.ndarray, window: int = 65536) -> None:
        n = int(X.shape[0])
        self.X, self.window = X, max(1, int(window))
        self.rows = np.asarray(rows, dtype=np.int32 if n < 2**31 else np.int64)
        self.shape = (int(self.rows.shape[0]), *tuple(X.shape[1:]))
        self.ndim, self.dtype = len(self.shape), X.dtype

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index: Any) -> np.ndarray:
        if not isinstance(index, slice) or index.step not in (None, 1):
            raise TypeError(f"a row subset is read by contiguous row slices (subset[a:b]), got {index!r}")
        sel = self.rows[index]
        if sel.size == 0:
            return np.empty((0, *self.shape[1:]), dtype=np.float32)
        parts = []
        lo, stop = int(sel[0]), int(sel[-1]) + 1
        while lo < stop:  # windows of X holding selected rows; the rows between two selected ones are skipped when far apart
            hi = min(stop, lo + self.window)
            a, b = np.searchsorted(sel, [lo, hi])
            parts.append(as_numpy(self.X[lo:hi])[sel[a:b] - lo])
            lo = int(sel[b]) if b < sel.size else stop
        return parts[0] if len(parts) == 1 else np.concatenate(parts)


def take_rows(X: Any, rows: np.ndarray) -> Any:
    """``X[rows]``: indexed in memory, a :class:`RowSubset` of a chunked array when ``rows`` increase."""
    if is_in_memory(X):
        return X[rows]
    rows = np.asarray(rows)
    return RowSubset(X, rows) if rows.size < 2 or bool((rows[1:] > rows[:-1]).all()) else X[rows]


#: The share of a CUDA device's free memory a probe's training rows may take when held there.
DEVICE_SHARE = 0.4


def on_device(X: Any, device: torch.device, chunk: int = 65536, share: float = DEVICE_SHARE) -> Tensor | None:
    """X as one float32 tensor on ``device`` when it is a CUDA device with room for it, else None.

    Rows an optimiser visits many times (every L-BFGS evaluation, every epoch) are then read from
    the store and copied once, instead of once per pass; they are read ``chunk`` rows at a time,
    so host memory holds one chunk. "Room" is ``share`` of the device's free memory, which leaves
    the rest for the logits, gradients and activations of the fit.

    Args:
        X: (N, ...) rows in memory or chunked (dask, zarr, h5py).
    Returns:
        (N, ...) float32 on ``device``, or None (not CUDA, or too large: the caller streams X).
    """
    if device.type != "cuda":
        return None
    if isinstance(X, Tensor) and X.device == device:
        return X.float()
    need = 4 * int(np.prod(X.shape))
    free = torch.cuda.mem_get_info(device)[0]
    if need > share * free:
        log.info("%.1f GB of training rows do not fit in %.0f%% of %s's %.1f GB free: streaming them", need / 1e9, 100 * share, device, free / 1e9)
        return None
    log.info("holding the %s training rows on %s (%.1f GB)", "×".join(map(str, X.shape)), device, need / 1e9)
    return fill(X, device, chunk)


def fill(X: Any, device: torch.device, chunk: int) -> Tensor:
    """(N, ...) rows of X copied into one new float32 tensor on ``device``, ``chunk`` rows at a time."""
    out = torch.empty(tuple(X.shape), dtype=torch.float32, device=device)
    for start, rows in row_chunks(X, chunk):
        out[start : start + rows.shape[0]] = torch.from_numpy(rows).to(device)
    return out


def flatten_rows(X: Any) -> Any:
    """(N, ...) → (N, D): vector probes see one feature vector per row."""
    if len(X.shape) == 2:
        return X
    n = X.shape[0]
    return X.reshape(n, -1)


#: Below this many multiply-adds per step, one thread beats several: the work of a tiny matmul is
#: less than the cost of waking (or, on a busy machine, waiting for) the other OpenMP threads.
SMALL_WORK = 5e7


@contextlib.contextmanager
def torch_threads(num_threads: int | None, work: float | None = None) -> Iterator[None]:
    """Run the block with ``num_threads`` intra-op threads (restored after).

    ``num_threads=None`` chooses: one thread when ``work`` (multiply-adds per step) is below
    :data:`SMALL_WORK`, torch's current setting otherwise.
    """
    n = num_threads if num_threads is not None else (1 if work is not None and work < SMALL_WORK else None)
    before = torch.get_num_threads()
    if n is None or n == before:
        yield
        return
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)
