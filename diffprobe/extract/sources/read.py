"""Reading one item in a loader process: a file path, or the bytes of a tar member or table row.

Open tar files and table readers are kept (a few at a time), so consecutive items of one shard —
units and loader batches are contiguous runs of the data's order — are read forward, never by
reopening the file. A dask worker decodes a batch's items on a thread pool, so: tar files are kept
per thread (a handle shared between threads would interleave one thread's seek with another's
read), and table readers are shared under a lock (a row group is read once, not once per thread).
A forked process (a DataLoader worker) starts with none: an inherited file descriptor shares its
offset with the parent's.
"""

from __future__ import annotations

import io
import os
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, BinaryIO

from diffprobe.errors import DataError

if TYPE_CHECKING:
    from diffprobe.extract.data import Item

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


def _cached(kind: str, path: str, make: Any, per_thread: bool = False) -> Any:
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


def open_item(item: Item) -> str | BinaryIO:
    """What PIL opens for ``item``: its path, or its bytes.

    Raises:
        OSError: a tar member shorter than its index says (the file changed or was cut).
    """
    if item.kind == "file":
        return item.path
    if item.kind == "tar":
        f = _cached("tar", item.path, lambda: open_binary(item.path), per_thread=True)
        f.seek(item.offset)
        data = f.read(item.size)
        if len(data) != item.size:
            raise OSError(f"{item.path}: member at byte {item.offset} has {len(data)} of its {item.size} bytes (the tar is truncated)")
        return io.BytesIO(data)
    if item.kind in ("arrow", "parquet"):
        from diffprobe.extract.sources.tables import row_image

        return io.BytesIO(row_image(item))
    raise DataError(f"unknown item kind {item.kind!r}")
