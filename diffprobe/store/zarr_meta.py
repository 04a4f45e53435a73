"""A Zarr store's metadata read as plain JSON, without trusting it (see :mod:`~diffprobe.store.metadata`).

zarr parses an array's ``zarr.json`` when it lists or opens it, and a damaged one (truncated, a
negative shape, a dtype that does not exist) makes it raise — or, for a chunk size of 0 or a shape
of 10^15, succeed and fail later. Here the files are read as JSON and handed over unchecked, so that
damage can be reported per array instead of hiding the whole split.
"""

from __future__ import annotations

import json
from pathlib import Path

from diffprobe.errors import StoreCorruptError
from diffprobe.store.layout import PROGRESS_GROUP, ROOT_ATTR
from diffprobe.store.metadata import ArrayMeta

#: the most bytes read of a zarr.json (consolidated metadata included) before it counts as damaged
META_LIMIT = 64 << 20


def holds_store(path: Path) -> bool:
    """A Zarr directory with diffprobe's root attributes, or with its ``_progress`` folder (its
    ``zarr.json`` damaged, but recognisably a diffprobe store)."""
    meta = path / "zarr.json"
    if not path.is_dir() or not meta.is_file():
        return False
    if (path / PROGRESS_GROUP).is_dir():
        return True
    try:
        doc = json.loads(meta.read_bytes()[:META_LIMIT])
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and ROOT_ATTR in (doc.get("attributes") or {})


def children(folder: Path, node: str) -> list[str]:
    """Sub-folders of ``folder`` whose ``zarr.json`` says ``node`` ("group" or "array") — or cannot be
    read: those are listed too, so that a damaged one is reported rather than hidden."""
    out = []
    for child in folder.iterdir() if folder.is_dir() else ():
        meta = child / "zarr.json"
        if child.name == PROGRESS_GROUP or not meta.is_file():
            continue
        try:
            kind = json.loads(meta.read_bytes()[:META_LIMIT]).get("node_type")
        except (OSError, ValueError, AttributeError):
            kind = None
        if kind in (node, None):
            out.append(child.name)
    return sorted(out)


def array_meta(root: Path, group: str, name: str) -> ArrayMeta:
    """Shape, dtype, chunks, shards and attributes of ``group/name`` as its ``zarr.json`` records them.

    Raises:
        StoreCorruptError: the file cannot be read, is not JSON, or lacks a field.
    """
    path = root / group / name / "zarr.json"
    try:
        raw = path.read_bytes()
        if len(raw) > META_LIMIT:
            raise ValueError(f"{len(raw)} bytes, more than an array's metadata ever takes")
        doc = json.loads(raw)
        chunks = tuple(doc["chunk_grid"]["configuration"]["chunk_shape"])
        inner = [c for c in doc.get("codecs", ()) if c.get("name") == "sharding_indexed"]
        attrs = (doc.get("attributes") or {}).get(ROOT_ATTR, {})
        inner_chunks = tuple(inner[0]["configuration"]["chunk_shape"]) if inner else chunks
        return ArrayMeta(tuple(doc["shape"]), str(doc["data_type"]), inner_chunks, chunks if inner else None,
                         attrs if isinstance(attrs, dict) else {}, tuple(map(str, doc.get("dimension_names") or ())))  # fmt: skip
    except (OSError, ValueError, KeyError, TypeError, AttributeError, IndexError) as e:
        raise StoreCorruptError(f"the metadata of {group}/{name} ({path}) cannot be read ({type(e).__name__}: {e})") from None


def install(made: Path, target: Path) -> None:
    """Put the ``zarr.json`` of ``made`` (an array folder) in place of ``target``'s, atomically."""
    target.mkdir(parents=True, exist_ok=True)
    tmp = target / ".zarr.json.repair.tmp"
    tmp.write_bytes((made / "zarr.json").read_bytes())
    tmp.replace(target / "zarr.json")


def write_group(folder: Path, attrs: dict[str, object]) -> None:
    """Write ``folder``'s ``zarr.json`` as a group holding diffprobe's ``attrs``, atomically."""
    tmp = folder / ".zarr.json.repair.tmp"
    tmp.write_text(json.dumps({"attributes": {ROOT_ATTR: attrs}, "zarr_format": 3, "node_type": "group"}, indent=2))
    tmp.replace(folder / "zarr.json")
