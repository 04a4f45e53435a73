"""Files of a source: local paths and fsspec URLs, patterns that name several of them, and the open
files and readers a loader process keeps.

Open tar files and table readers are kept (a few at a time), so consecutive items of one shard —
units and loader batches are contiguous runs of the data's order — are read forward, never by
reopening the file. A dask worker decodes a batch's items on a thread pool, so: tar files are kept
per thread (a handle shared between threads would interleave one thread's seek with another's
read), and table readers are shared under a lock (a row group is read once, not once per thread).
A forked process (a DataLoader worker) starts with none: an inherited file descriptor shares its
offset with the parent's.
"""

from __future__ import annotations

import glob
import os
import re
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any, BinaryIO

from diffprobe.errors import DataError

_LOCAL = threading.local()
_SHARED: OrderedDict[tuple[str, str], Any] = OrderedDict()
_SHARED_LOCK = threading.RLock()
_KEEP = 4


def _forget_after_fork() -> None:
    global _LOCAL, _SHARED_LOCK
    _LOCAL = threading.local()
    _SHARED.clear()
    _SHARED_LOCK = threading.RLock()  # another thread may have held it at the fork


os.register_at_fork(after_in_child=_forget_after_fork)


def is_url(path: str) -> bool:
    return "://" in path


def open_binary(path: str) -> BinaryIO:
    """A local file, or any fsspec URL the environment supports (``s3://``, ``https://`` …)."""
    if not is_url(path):
        return open(path, "rb")
    import fsspec

    return fsspec.open(path, "rb").open()  # type: ignore[no-any-return]


def cached(kind: str, path: str, make: Any, per_thread: bool = False) -> Any:
    """The open ``(kind, path)`` object, made by ``make()`` on first use; the least recently used of
    more than a few is dropped.

    ``per_thread``: one object per thread (stateful file handles; dropped ones are closed). Otherwise
    one for all threads (readers that are safe to share), made under a lock and never closed while
    another thread may still hold it: it goes when its last user lets go.
    """
    if per_thread:
        opened: OrderedDict[tuple[str, str], Any] | None = getattr(_LOCAL, "open", None)
        if opened is None:
            opened = _LOCAL.open = OrderedDict()
        obj, dropped = _lookup(opened, (kind, path), make)
        for old in dropped:
            close = getattr(old, "close", None)
            if close:
                close()
        return obj
    with _SHARED_LOCK:
        return _lookup(_SHARED, (kind, path), make)[0]


def _lookup(opened: OrderedDict[tuple[str, str], Any], key: tuple[str, str], make: Any) -> tuple[Any, list[Any]]:
    """(the object under ``key``, made if missing; the objects dropped to keep :data:`_KEEP`)."""
    if key in opened:
        opened.move_to_end(key)
        return opened[key], []
    obj = opened[key] = make()
    dropped = []
    while len(opened) > _KEEP:
        dropped.append(opened.popitem(last=False)[1])
    return obj, dropped


_BRACE = re.compile(r"\{([^{}]*)\}")


def expand_braces(pattern: str) -> list[str]:
    """``a-{000..002}.tar`` → a-000.tar, a-001.tar, a-002.tar (zero padding kept); ``{x,y}`` → x, y;
    several braces multiply."""
    m = _BRACE.search(pattern)
    if m is None:
        return [pattern]
    body, head, tail = m.group(1), pattern[: m.start()], pattern[m.end() :]
    rng = re.fullmatch(r"(\d+)\.\.(\d+)", body)
    if rng:
        lo, hi = rng.group(1), rng.group(2)
        if int(hi) < int(lo):
            raise DataError(f"empty range {{{body}}} in {pattern!r}")
        width = len(lo) if lo.startswith("0") or len(lo) == len(hi) else 0
        choices = [str(i).zfill(width) for i in range(int(lo), int(hi) + 1)]
    else:
        choices = body.split(",")
    return [p for c in choices for p in expand_braces(head + c + tail)]


def expand(data: str) -> list[str]:
    """Every file ``data`` names: ``::``-joined parts, each a brace pattern, a glob or one path/URL."""
    out: list[str] = []
    for part in data.split("::"):
        for p in expand_braces(part.strip()):
            if not is_url(p) and any(c in p for c in "*?["):
                hits = sorted(glob.glob(str(Path(p).expanduser())))
                if not hits:
                    raise DataError(f"no files match {p!r}")
                out += hits
            else:
                out.append(p if is_url(p) else str(Path(p).expanduser()))
    return out
