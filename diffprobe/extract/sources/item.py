"""The item model every source produces: :class:`Item` (one image) and :class:`DataSpec` (the splits)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm"})
SPLIT_NAMES = ("train", "val", "valid", "validation", "test")
DEFAULT_SPLIT = "train"
#: A text file beside a manifest (or in a segmentation folder) naming the mask values, one per line:
#: line k is the name of value k.
MASK_CLASSES_FILE = "mask_classes.txt"


@dataclass(frozen=True, slots=True)
class Item:
    """One image: a stable id, where it is, and its class index (-1: none).

    ``kind`` names the source kind that reads it (see :data:`~diffprobe.extract.sources.kinds.SOURCES`):
    ``file`` (an image file at ``path``), ``tar`` (the member ``member`` of the tar ``path``: its
    data's byte ``offset`` and ``size``), ``arrow`` / ``parquet`` (row ``offset`` of that table
    file, column ``member``).
    """

    id: str
    path: str
    label: int
    kind: str = "file"
    offset: int = 0
    size: int = 0
    member: str = ""
    mask: str = ""  # the segmentation mask's file ("" = none)


@dataclass
class DataSpec:
    """Items of every split and the shared class names.

    Items are in a fixed order: sorted by id for folders and manifests; the order of the data for
    tar shards and tables (so that reading them is sequential). ``source`` records what they come
    from and how ids were made. A split's items are a list while a source builds them, and an
    :class:`~diffprobe.extract.sources.item_table.ItemTable` once :func:`~diffprobe.extract.sources.discover.discover`
    returns them.
    """

    class_names: list[str]
    splits: dict[str, Sequence[Item]] = field(default_factory=dict)
    source: dict[str, str] = field(default_factory=dict)
    mask_classes: list[str] = field(default_factory=list)  # the masks' class names by index ([]: unnamed)

    def fingerprint(self, split: str) -> str:
        """Hash of a split's ids and labels: stores refuse to mix data sets."""
        h = hashlib.sha256()
        items = self.splits[split]
        if hasattr(items, "hash_ids_and_labels"):  # an ItemTable: a window of columns at a time
            items.hash_ids_and_labels(h)
        else:
            for it in items:
                h.update(f"{it.id}\t{it.label}\n".encode())
        return h.hexdigest()[:16]


def name_labels(labels: set[Any]) -> tuple[list[str], dict[Any, int]]:
    """(class names, value → class index) for the label values of a tar or table source: strings are
    sorted by name; integers name themselves (0..max)."""
    if any(isinstance(v, str) for v in labels):
        names = sorted(map(str, labels))
        return names, {v: names.index(str(v)) for v in labels}
    return ([str(i) for i in range(max(labels) + 1)] if labels else []), {v: int(v) for v in labels}
