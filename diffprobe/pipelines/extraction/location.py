"""Where a store's images are: recorded at extraction both absolute and relative to the store, so
``store repair`` and ``store show`` find them from any folder, and after the data and the store moved
together."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: The store's root attribute holding the location of its data.
ATTR = "data_location"


def record_location(data: str, out: Path) -> dict[str, str] | None:
    """``{"absolute": …, "from_store": …}`` for ``data`` when it is a local file or folder; None for
    sources that are not paths (``synthetic:``, URLs, globs)."""
    p = Path(data).expanduser()
    if "://" in data or not p.exists():
        return None
    absolute = p.resolve()
    try:
        from_store = os.path.relpath(absolute, Path(out).expanduser().resolve().parent)
    except ValueError:  # another drive (Windows)
        from_store = str(absolute)
    return {"absolute": str(absolute), "from_store": from_store}


def locate_data(data: str, store: Path, location: dict[str, Any] | None) -> str:
    """The recorded ``data`` as a path that exists from here: as written when it does (a run from
    the same folder), else its absolute path, else its path relative to the store (the two moved
    together). Returns ``data`` unchanged when none exists; the caller's error then names it."""
    if "://" in data or Path(data).expanduser().exists() or not location:
        return data
    for where in (Path(location.get("absolute", "")), Path(store).expanduser().resolve().parent / location.get("from_store", "")):
        if str(where) and where.exists():
            log.info("reading the store's data from %s (recorded as %r)", where, data)
            return str(where)
    return data
