"""ImageFolder trees (``root/<class>/<img>``, optionally under split folders) and segmentation trees
(``[<split>/]images/<img>`` with ``[<split>/]masks/<same stem>.png``)."""

from __future__ import annotations

from pathlib import Path

from diffprobe.errors import DataError
from diffprobe.extract.sources.item import DEFAULT_SPLIT, IMAGE_EXTENSIONS, SPLIT_NAMES, DataSpec, Item
from diffprobe.extract.sources.kinds import SourceKind, Target
from diffprobe.extract.sources.options import DataOptions


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


def _detect(target: Target, options: DataOptions) -> DataSpec | None:
    return image_folder(target.path) if target.path is not None and target.path.is_dir() else None


#: a folder of images (the items are plain files, read by the ``file`` kind)
SOURCE = SourceKind("folder", detect=_detect)
#: an image file on disk: what folders and manifests list
FILE = SourceKind("file", read=lambda item: item.path)
