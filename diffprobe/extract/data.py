"""Image sources and the paper's evaluation preprocessing.

Folders (ImageFolder trees) and CSV/TSV manifests are here; WebDataset tar shards and Hugging Face
datasets on disk (Arrow, Parquet) are in :mod:`diffprobe.extract.sources`. :func:`discover` picks
the source from what ``data`` is.
"""

from __future__ import annotations

import csv
import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np
from PIL import Image, UnidentifiedImageError

from diffprobe.errors import DataError
from diffprobe.extract.augment import centre_crop
from diffprobe.extract.sources.options import DataOptions
from diffprobe.extract.sources.read import open_item
from diffprobe.extract.views import ViewSpec, to_array

if TYPE_CHECKING:
    from diffprobe.extract.noise import Pass

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm"})
SPLIT_NAMES = ("train", "val", "valid", "validation", "test")
DEFAULT_SPLIT = "train"


@dataclass(frozen=True)
class Item:
    """One image: a stable id, where it is, and its class index (-1: none).

    ``kind`` says how ``path`` holds it: ``file`` (an image file), ``tar`` (the member ``member``
    of the tar ``path``: its data's byte ``offset`` and ``size``), ``arrow`` / ``parquet`` (row
    ``offset`` of that table file, column ``member``; see :mod:`diffprobe.extract.sources.read`).
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
    from and how ids were made.
    """

    class_names: list[str]
    splits: dict[str, list[Item]] = field(default_factory=dict)
    source: dict[str, str] = field(default_factory=dict)

    def fingerprint(self, split: str) -> str:
        """Hash of a split's ids and labels: stores refuse to mix data sets."""
        h = hashlib.sha256()
        for it in self.splits[split]:
            h.update(f"{it.id}\t{it.label}\n".encode())
        return h.hexdigest()[:16]


def name_labels(labels: set[Any]) -> tuple[list[str], dict[Any, int]]:
    """(class names, value → class index) for the label values of a tar or table source: strings are
    sorted by name; integers name themselves (0..max)."""
    if any(isinstance(v, str) for v in labels):
        names = sorted(map(str, labels))
        return names, {v: names.index(str(v)) for v in labels}
    return ([str(i) for i in range(max(labels) + 1)] if labels else []), {v: int(v) for v in labels}


def _is_image(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS


def _scan_classes(root: Path) -> dict[str, list[Path]]:
    """class folder name → image files under it (recursively)."""
    out: dict[str, list[Path]] = {}
    for d in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(f for f in d.rglob("*") if _is_image(f))
        if files:
            out[d.name] = files
    return out


def _segmentation_items(base: Path) -> list[Item] | None:
    """``base/images/*`` with ``base/masks/<same stem>.*``: unlabelled items with masks; None when
    ``base`` is not laid out so."""
    images, masks = base / "images", base / "masks"
    if not (images.is_dir() and masks.is_dir()):
        return None
    by_stem = {f.relative_to(masks).with_suffix("").as_posix(): f for f in masks.rglob("*") if _is_image(f)}
    items = []
    for f in sorted(f for f in images.rglob("*") if _is_image(f)):
        rel = f.relative_to(images)
        mask = by_stem.get(rel.with_suffix("").as_posix())
        if mask is None:
            raise DataError(f"image {f} has no mask in {masks} (expected {masks / rel.with_suffix('.png')})")
        items.append(Item(rel.as_posix(), str(f), -1, mask=str(mask)))
    return items


def image_folder(root: Path) -> DataSpec:
    """An ImageFolder tree: ``root/<class>/<img>``, or ``root/<split>/<class>/<img>`` for split folders;
    or a segmentation tree: ``[<split>/]images/<img>`` with ``[<split>/]masks/<same stem>.png``.

    Classes are the sorted union of class folder names over splits, so labels agree across splits.
    Item ids are paths relative to the split folder (posix separators).
    """
    subdirs = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    split_dirs = {p.name: p for p in subdirs if p.name.lower() in SPLIT_NAMES}
    seg = {name: _segmentation_items(d) for name, d in (split_dirs or {DEFAULT_SPLIT: root}).items()}
    if any(v is not None for v in seg.values()):  # a segmentation layout: images/ + masks/
        return DataSpec([], {s: v for s, v in sorted(seg.items()) if v}, {"kind": "segmentation folder"})
    scanned = {name: _scan_classes(d) for name, d in split_dirs.items()} if split_dirs else {DEFAULT_SPLIT: _scan_classes(root)}
    classes = sorted({c for per in scanned.values() for c in per})
    if not classes:
        raise DataError(
            f"no images found under {root}: expected {root}/<class>/<image> or {root}/<split>/<class>/<image> "
            f"with extensions {', '.join(sorted(IMAGE_EXTENSIONS))}"
        )
    index = {c: i for i, c in enumerate(classes)}
    spec = DataSpec(classes)
    for split, per in sorted(scanned.items()):
        base = split_dirs.get(split, root)
        items = [Item(f.relative_to(base).as_posix(), str(f), index[c]) for c, files in per.items() for f in files]
        spec.splits[split] = sorted(items, key=lambda it: it.id)
    return spec


def manifest(path: Path) -> DataSpec:
    """A CSV/TSV manifest with a header ``path,label[,split][,id][,mask]``; relative paths are relative to it.

    Labels are class names (or integers); an empty label means unlabelled (-1). The item id is the
    ``id`` column when there is one, else the path as written. Ids seed the noise, so they should
    not depend on where the data lives: use relative paths, or an ``id`` column with absolute ones.
    """
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
        spec.splits.setdefault(split, []).append(Item(item_id, str(p), index.get(r.get("label", ""), -1), mask=mask_path))
    if not has_ids and any(Path(r["path"]).is_absolute() for r in rows):
        log.warning(
            "manifest %s lists absolute paths and no 'id' column: item ids (which seed the noise) are those paths, "
            "so the features depend on where the data lives; add an 'id' column (or use relative paths)", path
        )  # fmt: skip
    for split in spec.splits:
        spec.splits[split].sort(key=lambda it: it.id)
    return spec


def discover(data: str | Path, splits: tuple[str, ...] = (), options: DataOptions | None = None, index: Path | None = None,
             write_index: bool = True) -> DataSpec:
    """The items of ``data``, restricted to ``splits`` when given.

    ``data`` is an ImageFolder tree, a CSV/TSV manifest, WebDataset tar shards (a ``.tar``, a brace
    pattern ``shard-{000..009}.tar``, a glob, several joined by ``::``, fsspec URLs, or a folder of
    tars), or a Hugging Face dataset on disk (a ``save_to_disk`` folder, or Parquet files). ``index``:
    where a tar index is cached (beside the store; read but not written when ``write_index`` is False).
    """
    from diffprobe.extract.sources.detect import open_source

    opts = options or DataOptions()
    spec = open_source(str(data), opts, index, write_index)
    if spec is None:
        p = Path(data).expanduser()
        if not p.exists():
            raise DataError(f"data not found: {p}")
        spec = image_folder(p) if p.is_dir() else manifest(p)
    if splits:
        missing = [s for s in splits if s not in spec.splits]
        if missing:
            raise DataError(f"split(s) {missing} not found in {p}; available: {sorted(spec.splits)}")
        spec.splits = {s: spec.splits[s] for s in splits}
    return spec


def decode_image(path: str | Path | BinaryIO) -> Image.Image:
    """Decode an image file (or file object) fully, as RGB.

    Raises:
        OSError / ValueError / UnidentifiedImageError for unreadable, empty or truncated files.
    """
    with Image.open(path) as im:
        im.load()  # decode now: truncated files raise here
        return im.convert("RGB")


def load_image(path: str | Path | BinaryIO, size: int) -> np.ndarray:
    """Decode, convert to RGB, resize the short side to ``size`` (bicubic), centre-crop, scale to [-1, 1].

    This is the paper's evaluation transform (Resize(size) + CenterCrop(size)): view 0 of every item.

    Returns:
        (3, size, size) float32 array.
    Raises:
        OSError / ValueError / UnidentifiedImageError for unreadable, empty or truncated files.
    """
    return to_array(centre_crop(decode_image(path), size, Image.Resampling.BICUBIC))


DECODE_ERRORS = (OSError, ValueError, UnidentifiedImageError, SyntaxError, Image.DecompressionBombError)


class ImageDataset:
    """Map-style dataset of (index, images, ok, error, noise) for a DataLoader; bad images never raise.

    Images are (3, S, S) float32 — or (V, 3, S, S) with ``views`` of V > 1 (view 0 the evaluation
    transform, the others its augmentation). With ``noise`` = ((view, t, draw), …) and a seed, each
    item also carries its diffusion noise for those passes, (P, *noise_shape) float32 (default
    (3, S, S); a latent model's latent shape) — generated here, in the loader's worker processes, so
    that the device never waits for it. Without (an image model, which adds no noise), it is an
    empty (0, *noise_shape) array.
    """

    def __init__(self, items: list[Item], size: int, noise: tuple[Pass, ...] = (), seed: int = 0,
                 noise_shape: tuple[int, int, int] | None = None, views: ViewSpec | None = None) -> None:  # fmt: skip
        self.items = items
        self.size = size
        self.noise = noise
        self.seed = seed
        self.noise_shape = noise_shape or (3, size, size)
        self.views = views if views is not None and views.views > 1 else None

    def __len__(self) -> int:
        return len(self.items)

    def _images(self, item: Item) -> np.ndarray:
        if self.views is None:
            return load_image(open_item(item), self.size)
        return self.views.images(decode_image(open_item(item)), item.id)

    def __getitem__(self, i: int) -> tuple[int, np.ndarray, bool, str, np.ndarray]:
        eps = np.zeros((0, *self.noise_shape), np.float32)
        it = self.items[i]
        if self.noise:
            from diffprobe.extract.noise import item_noise

            eps = np.stack([item_noise(it.id, t, self.seed, d, self.noise_shape, view=v).numpy() for v, t, d in self.noise])
        try:
            return i, self._images(it), True, "", eps
        except DECODE_ERRORS as e:
            shape = (3, self.size, self.size) if self.views is None else (self.views.views, 3, self.size, self.size)
            return i, np.zeros(shape, np.float32), False, f"{type(e).__name__}: {e}", eps
