"""What DATA is: ask every registered source kind's detector, in order (see :mod:`.kinds`)."""

from __future__ import annotations

import re
from pathlib import Path

from diffprobe.errors import DataError
from diffprobe.extract.sources.files import expand, is_url
from diffprobe.extract.sources.item import MASK_CLASSES_FILE, DataSpec
from diffprobe.extract.sources.item_table import ItemTable
from diffprobe.extract.sources.kinds import SOURCES, Target
from diffprobe.extract.sources.options import DataOptions

_HUB = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def target_of(data: str | Path, index: Path | None = None, write_index: bool = True) -> Target:
    """Resolve DATA once: a pattern, URL or ``::`` list to its files, else one local path.

    Raises:
        DataError: a missing path (a hub name gets the download command), or a pattern matching nothing.
    """
    text = str(data)
    scheme = text.partition(":")[0]
    if ":" in text and not is_url(text) and scheme in SOURCES and not Path(text).exists():  # synthetic:… (a source by name)
        return Target(text, None, None, index, write_index)
    if any(m in text for m in ("::", "{")) or is_url(text) or any(c in text for c in "*?["):
        return Target(text, tuple(expand(text)), None, index, write_index)
    p = Path(text).expanduser()
    if not p.exists():
        if _HUB.match(text):
            local = text.split("/")[-1]
            raise DataError(f"data not found: {text!r} is no local path. If it names a Hugging Face hub dataset: diffprobe "
                            f"never downloads; download it first (`hf download {text} --repo-type dataset --local-dir {local}`) "
                            f"and pass {local}")  # fmt: skip
        raise DataError(f"data not found: {p}")
    return Target(text, None, p, index, write_index)


def discover(data: str | Path, splits: tuple[str, ...] = (), options: DataOptions | None = None, index: Path | None = None,
             write_index: bool = True) -> DataSpec:  # fmt: skip
    """The items of ``data``, restricted to ``splits`` when given.

    ``data`` is an ImageFolder tree, a CSV/TSV manifest, WebDataset tar shards (a ``.tar``, a brace
    pattern ``shard-{000..009}.tar``, a glob, several joined by ``::``, fsspec URLs, or a folder of
    tars), or a Hugging Face dataset on disk (a ``save_to_disk`` folder, or Parquet files) — or any
    other registered source kind. ``index``: where a tar index is cached (beside the store; read but
    not written when ``write_index`` is False).

    Each split's items come back as an :class:`~diffprobe.extract.sources.item_table.ItemTable`.

    Raises:
        DataError: DATA is missing, of no known kind, or unreadable (the message says which).
    """
    opts = options or DataOptions()
    target = target_of(data, index, write_index)
    spec = None
    for name in SOURCES.names():
        kind = SOURCES.get(name)
        if kind.detect is not None and (spec := kind.detect(target, opts)) is not None:
            break
    if spec is None:
        kinds = ", ".join(sorted({Path(f.split("?")[0]).suffix.lower() or "(no suffix)" for f in target.file_list()}))
        got = f", got {kinds}" if kinds else ""
        raise DataError(f"cannot read {data!r} as images: expected an ImageFolder tree, a CSV/TSV manifest, .tar shards or "
                        f".parquet files{got}")  # fmt: skip
    if splits:
        missing = [s for s in splits if s not in spec.splits]
        if missing:
            raise DataError(f"split(s) {missing} not found in {data}; available: {sorted(spec.splits)}")
        spec.splits = {s: spec.splits[s] for s in splits}
    tables = {s: ItemTable.of(items) for s, items in spec.splits.items()}  # ~25 bytes per item from here on
    spec.splits = dict(tables)
    if target.path is not None and any(items.has_masks() for items in tables.values()):
        spec.mask_classes = read_mask_classes(target.path)
    return spec


def read_mask_classes(data: Path) -> list[str]:
    """The mask values' names from :data:`MASK_CLASSES_FILE` in the data folder (or beside a manifest
    file); [] when there is none.

    Raises:
        DataError: the file names a class twice.
    """
    f = (data if data.is_dir() else data.parent) / MASK_CLASSES_FILE
    if not f.is_file():
        return []
    names = [ln.strip() for ln in f.read_text(encoding="utf-8").splitlines() if ln.strip()]
    if len(set(names)) != len(names):
        raise DataError(f"{f} names a class twice; write one name per mask value, line k naming value k")
    return names
