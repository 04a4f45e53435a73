"""Synthetic images at any count: ``synthetic:TRAIN[,VAL]@SIZE[/CLASSES]`` (e.g. ``synthetic:1281167,50000@32/1000``).

For rehearsing scale — planning, stores, dask, probes at ImageNet's item counts — on a CPU, where the
network is not what is measured (pair it with the ``adm-8-scale`` preset and ``--random-weights``).
Item ``i`` of a split is ``<split>/<i:08d>``, of class ``i mod CLASSES``; its image is a pure function
of (split, i): the class's colour (one of CLASSES well-separated RGB triples) with a per-item
±24 grey-level jitter, so the classes are separable by construction. Images are served as binary
PPM bytes, which PIL decodes in microseconds; nothing is written to disk.
"""

from __future__ import annotations

import hashlib
import io
import re
from dataclasses import dataclass

import numpy as np

from diffprobe.errors import DataError
from diffprobe.extract.sources.item import DataSpec, Item
from diffprobe.extract.sources.item_table import WINDOW, ItemTable, StrColumn, small_int
from diffprobe.extract.sources.kinds import SourceKind, Target
from diffprobe.extract.sources.options import DataOptions

_SPEC = re.compile(r"^synthetic:(\d+)(?:,(\d+))?@(\d+)(?:/(\d+))?$")
#: the DATA prefix that names this source
PREFIX = "synthetic:"


@dataclass(frozen=True)
class Synthetic:
    """What a ``synthetic:`` DATA string says: items per split, the image side, the number of classes."""

    counts: dict[str, int]
    size: int
    classes: int

    @classmethod
    def parse(cls, text: str) -> Synthetic:
        m = _SPEC.match(text.strip())
        if m is None:
            raise DataError(f"expected synthetic data as synthetic:TRAIN[,VAL]@SIZE[/CLASSES] (e.g. synthetic:10000,1000@32/10), got {text!r}")
        train, val, size, classes = int(m[1]), int(m[2] or 0), int(m[3]), int(m[4] or 10)
        if train < 1 or size < 1 or not 2 <= classes <= 4096:
            raise DataError(f"expected at least 1 training item, a positive size and 2..4096 classes, got {text!r}")
        return cls({"train": train, **({"val": val} if val else {})}, size, classes)


def class_colour(k: int) -> np.ndarray:
    """(3,) colour of class ``k`` in 40..215 (so the ±24 jitter never clips): a hash of k, spread over the cube."""
    digest = hashlib.blake2b(f"synthetic-class:{k}".encode(), digest_size=3).digest()
    return 40 + np.frombuffer(digest, dtype=np.uint8).astype(np.int16) % 176


def image_bytes(item_id: str, label: int, size: int) -> bytes:
    """The binary PPM of an item: its class's colour plus a jitter seeded by its id."""
    seed = int.from_bytes(hashlib.blake2b(item_id.encode(), digest_size=8).digest(), "little")
    jitter = np.random.default_rng(seed).integers(-24, 25, size=(size, size, 3), dtype=np.int16)
    pixels = np.clip(class_colour(label)[None, None, :] + jitter, 0, 255).astype(np.uint8)
    return f"P6 {size} {size} 255\n".encode() + pixels.tobytes()


def synthetic_items(spec: Synthetic) -> DataSpec:
    """Every split's items (ids ``<split>/<i:08d>``, labels ``i mod classes``), in order, as columns
    made directly (1.28M items: ~30 MB, never one object per item)."""
    size = spec.size
    out = DataSpec([f"class{k:04d}" for k in range(spec.classes)], source={"kind": "synthetic", "ids": "<split>/<index>"})
    for split, n in spec.counts.items():
        index = np.arange(n, dtype=np.int64)
        ids = np.empty(n, dtype=f"S{len(split) + 1 + max(8, len(str(n - 1)))}")
        for lo in range(0, n, WINDOW):
            ids[lo : lo + WINDOW] = [f"{split}/{i:08d}".encode() for i in range(lo, min(n, lo + WINDOW))]
        out.splits[split] = ItemTable(StrColumn(data=ids), StrColumn.constant(f"synthetic:{size}", n), small_int(index % spec.classes),
                                      StrColumn.constant("synthetic", n), small_int(index), small_int(np.full(n, size)),
                                      StrColumn.constant("", n), StrColumn.constant("", n))  # fmt: skip
    return out


def _detect(target: Target, options: DataOptions) -> DataSpec | None:
    return synthetic_items(Synthetic.parse(target.text)) if target.text.startswith(PREFIX) else None


def _read(item: Item) -> io.BytesIO:
    return io.BytesIO(image_bytes(item.id, item.label, item.size))


#: generated images (``synthetic:…`` DATA)
SOURCE = SourceKind("synthetic", detect=_detect, read=_read)
