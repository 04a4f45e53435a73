"""The source registry: each kind of data diffprobe reads has a detector (is DATA of this kind? its
items) and a reader (an item's bytes), either of which may be absent.

A new source is one module defining a :class:`SourceKind` and one ``register_lazy`` line below.
:func:`~diffprobe.extract.sources.discover.discover` asks the detectors in registration order (the
first that claims DATA wins; the manifest, which takes any text file, is last); an :class:`Item`'s
``kind`` names the reader that opens it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from diffprobe.errors import DataError
from diffprobe.registry import Registry

if TYPE_CHECKING:
    from diffprobe.extract.sources.item import DataSpec, Item
    from diffprobe.extract.sources.options import DataOptions


@dataclass(frozen=True)
class Target:
    """What DATA names, resolved once for every detector.

    Attributes:
        text: DATA as given.
        files: the files a pattern, URL or ``::`` list names (None: DATA is one local path).
        path: the local file or folder DATA names (None for a pattern).
        index: where a tar index is cached (beside the store); ``write_index``: whether it may be written.
    """

    text: str
    files: tuple[str, ...] | None
    path: Path | None
    index: Path | None = None
    write_index: bool = True

    def shards(self, suffix: str) -> list[str] | None:
        """The files of DATA if every one ends in ``suffix`` (a folder: its ``*suffix`` files, when it has
        no sub-folders); else None."""
        if self.files is not None:
            return list(self.files) if all(f.split("?")[0].lower().endswith(suffix) for f in self.files) else None
        p = self.path
        if p is None:
            return None
        if p.is_file():
            return [str(p)] if p.name.lower().endswith(suffix) else None
        if any(d.is_dir() and not d.name.startswith(".") for d in p.iterdir()):
            return None  # an ImageFolder tree
        return sorted(str(f) for f in p.glob(f"*{suffix}")) or None

    def file_list(self) -> list[str]:
        """The files named, or the one local file; [] for a folder."""
        if self.files is not None:
            return list(self.files)
        return [str(self.path)] if self.path is not None and self.path.is_file() else []


Detector = Callable[[Target, "DataOptions"], "DataSpec | None"]
Reader = Callable[["Item"], "str | BinaryIO"]


@dataclass(frozen=True)
class SourceKind:
    """One kind of data: ``detect(target, options)`` → its items, or None when DATA is not of this
    kind; ``read(item)`` → what PIL opens for an item of this kind (a path or a file object)."""

    name: str
    detect: Detector | None = None
    read: Reader | None = None


#: Every source kind, in the order detectors are asked.
SOURCES: Registry[SourceKind] = Registry("source kind", error=DataError)
SOURCES.register_lazy("synthetic", "diffprobe.extract.sources.synthetic:SOURCE")
SOURCES.register_lazy("tar", "diffprobe.extract.sources.tars:SOURCE")
SOURCES.register_lazy("parquet", "diffprobe.extract.sources.tables:PARQUET")
SOURCES.register_lazy("arrow", "diffprobe.extract.sources.tables:ARROW")
SOURCES.register_lazy("folder", "diffprobe.extract.sources.folder:SOURCE")
SOURCES.register_lazy("file", "diffprobe.extract.sources.folder:FILE")
SOURCES.register_lazy("manifest", "diffprobe.extract.sources.manifest:SOURCE")


def open_item(item: Item) -> str | BinaryIO:
    """What PIL opens for ``item``: its path, or its bytes (through its kind's reader).

    Raises:
        DataError: an item kind without a reader.  OSError: the bytes cannot be read (a truncated tar …).
    """
    kind = SOURCES.get(item.kind)
    if kind.read is None:
        raise DataError(f"the {item.kind!r} source kind detects data but reads no items; valid item kinds: "
                        f"{', '.join(n for n in SOURCES.names() if SOURCES.get(n).read is not None)}")  # fmt: skip
    return kind.read(item)
