"""CSV/TSV manifests: a header ``path,label[,split][,id][,mask]``, one image per row."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

from diffprobe.errors import DataError
from diffprobe.extract.sources.item import DEFAULT_SPLIT, IMAGE_EXTENSIONS, DataSpec, Item
from diffprobe.extract.sources.kinds import SourceKind, Target
from diffprobe.extract.sources.options import DataOptions

log = logging.getLogger(__name__)

#: what a file that is not a manifest starts with, and what to do instead
_MAGIC = (
    (b"\x1f\x8b", "a gzip-compressed file (a .tar.gz?): diffprobe reads uncompressed .tar shards; decompress it (gunzip) first"),
    (b"PK\x03\x04", "a zip archive: unpack it into an ImageFolder tree (DATA/<class>/<image>) first"),
    (b"\x89PNG", "a single PNG image: pass the folder that holds the images (DATA/<class>/<image>) or a manifest listing them"),
    (b"\xff\xd8\xff", "a single JPEG image: pass the folder that holds the images (DATA/<class>/<image>) or a manifest listing them"),
    (b"PAR1", "a Parquet file without the .parquet suffix: rename it to end in .parquet"),
    (b"\x93NUMPY", "a NumPy array, not images: import features with `diffprobe store import`"),
)


def check_text(path: Path) -> None:
    """Refuse a DATA file that is not a text manifest, naming what it is (by its first bytes).

    Raises:
        DataError: an archive, an image, a binary file or non-UTF-8 text.
    """
    if path.suffix.lower() in IMAGE_EXTENSIONS:
        raise DataError(f"{path} is a single image: pass the folder that holds the images (DATA/<class>/<image>) or a manifest listing them")
    with open(path, "rb") as f:
        head = f.read(4096)
    for magic, what in _MAGIC:
        if head.startswith(magic):
            raise DataError(f"{path} is {what}")
    if b"\0" in head:
        raise DataError(f"{path} is a binary file, not a CSV/TSV manifest (a header path,label[,split][,id][,mask] and one row per image)")
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as e:
        if e.start < len(head) - 4:  # not just a multi-byte character cut at the 4 KiB boundary
            raise DataError(f"{path} is not UTF-8 text (byte {e.start}), so not a CSV/TSV manifest; save the manifest as UTF-8") from None


def manifest(path: Path) -> DataSpec:
    """A CSV/TSV manifest with a header ``path,label[,split][,id][,mask]``; relative paths are relative to it.

    Labels are class names (or integers); an empty label means unlabelled (-1). The item id is the
    ``id`` column when there is one, else the path as written. Ids seed the noise, so they should
    not depend on where the data lives: use relative paths, or an ``id`` column with absolute ones.
    """
    check_text(path)
    delim = "\t" if path.suffix.lower() in (".tsv", ".tab") else ","
    with open(path, newline="") as f:
        reader = csv.DictReader(f, delimiter=delim)
        cols = [c.strip().lower() for c in reader.fieldnames or []]
        if "path" not in cols:
            raise DataError(f"manifest {path} needs a header with a 'path' column (and 'label', optional 'split', 'id'); got {cols}")
        rows = [{k.strip().lower(): (v or "").strip() for k, v in r.items() if k} for r in reader]
    if not rows:
        raise DataError(f"manifest {path} lists no images")
    labels = sorted({r.get("label", "") for r in rows} - {""})
    if labels and all(lb.lstrip("-").isdigit() for lb in labels):
        labels = sorted(labels, key=int)
    index = {lb: i for i, lb in enumerate(labels)}
    spec = DataSpec(labels)
    splits: dict[str, list[Item]] = {}  # each split's items, built here (spec.splits takes them at the end)
    seen: dict[str, set[str]] = {}
    has_ids = "id" in cols
    for line, r in enumerate(rows, start=2):
        split = r.get("split") or DEFAULT_SPLIT
        rel = r["path"]
        p = Path(rel) if Path(rel).is_absolute() else path.parent / rel
        item_id = r["id"] if has_ids else Path(rel).as_posix()
        if not item_id:
            raise DataError(f"manifest {path}, line {line}: empty id for {rel!r}; every row needs an id when the column is there")
        if item_id in seen.setdefault(split, set()):
            raise DataError(f"manifest {path}: id {item_id!r} is listed twice in split {split!r}")
        seen[split].add(item_id)
        mask = r.get("mask", "")
        mask_path = "" if not mask else str(Path(mask) if Path(mask).is_absolute() else path.parent / mask)
        splits.setdefault(split, []).append(Item(item_id, str(p), index.get(r.get("label", ""), -1), mask=mask_path))
    if not has_ids and any(Path(r["path"]).is_absolute() for r in rows):
        log.warning(
            "manifest %s lists absolute paths and no 'id' column: item ids (which seed the noise) are those paths, "
            "so the features depend on where the data lives; add an 'id' column (or use relative paths)", path
        )  # fmt: skip
    for split in splits:
        splits[split].sort(key=lambda it: it.id)
    spec.splits.update(splits)
    return spec


def _detect(target: Target, options: DataOptions) -> DataSpec | None:
    return manifest(target.path) if target.path is not None and target.path.is_file() else None


#: a manifest file (its items are plain files, read by the ``file`` kind)
SOURCE = SourceKind("manifest", detect=_detect)
