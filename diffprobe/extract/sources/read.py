"""Reading one item in a loader process: a file path, or the bytes of a tar member or table row.

Open tar files and table readers are kept per thread (a few at a time), so consecutive items of one
shard — units and loader batches are contiguous runs of the data's order — are read forward, never
by reopening the file. Per thread, because a dask worker decodes a batch's items on a thread pool: a
file handle shared between threads would interleave one thread's seek with another's read.
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, BinaryIO

from diffprobe.errors import DataError

if TYPE_CHECKING:
    from diffprobe.extract.data import Item

_LOCAL = threading.local()
_KEEP = 4


def is_url(path: str) -> bool:
    return "://" in path


def open_binary(path: str) -> BinaryIO:
    """A local file, or any fsspec URL the environment supports (``s3://``, ``https://`` …)."""
    if not is_url(path):
        return open(path, "rb")
    import fsspec

    return fsspec.open(path, "rb").open()  # type: ignore[no-any-return]


def _cached(kind: str, path: str, make: Any) -> Any:
    """This thread's open ``(kind, path)`` object, made by ``make()`` on first use (the least recently
    used of more than a few is closed)."""
    opened: OrderedDict[tuple[str, str], Any] | None = getattr(_LOCAL, "open", None)
    if opened is None:
        opened = _LOCAL.open = OrderedDict()
    key = (kind, path)
    if key in opened:
        opened.move_to_end(key)
        return opened[key]
    obj = opened[key] = make()
    while len(opened) > _KEEP:
        _, old = opened.popitem(last=False)
        close = getattr(old, "close", None)
        if close:
            close()
    return obj


def open_item(item: Item) -> str | BinaryIO:
    """What PIL opens for ``item``: its path, or its bytes.

    Raises:
        OSError: a tar member shorter than its index says (the file changed or was cut).
    """
    if item.kind == "file":
        return item.path
    if item.kind == "tar":
        f = _cached("tar", item.path, lambda: open_binary(item.path))
        f.seek(item.offset)
        data = f.read(item.size)
        if len(data) != item.size:
            raise OSError(f"{item.path}: member at byte {item.offset} has {len(data)} of its {item.size} bytes (the tar is truncated)")
        return io.BytesIO(data)
    if item.kind in ("arrow", "parquet"):
        from diffprobe.extract.sources.tables import row_image

        return io.BytesIO(row_image(item))
    raise DataError(f"unknown item kind {item.kind!r}")
