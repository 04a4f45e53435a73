"""Segmentation masks for the bundled Fashion-MNIST slice: a real, offline dense task.

Every pixel of the garment (grey value > 0 in the padded 32×32 image; Fashion-MNIST's background is
exactly 0) gets its image's class + 1, the background gets 0: 11 classes, and telling which garment
a pixel belongs to needs recognition, not thresholding. Written as PNG masks beside a manifest with a
``mask`` column::

    python -m diffprobe.extract.sources.fmnist_masks OUT_DIR     # OUT_DIR/fmnist-seg.csv + OUT_DIR/masks/
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
from PIL import Image

from diffprobe.extract.sources.item import MASK_CLASSES_FILE

log = logging.getLogger(__name__)

SLICE = Path(__file__).resolve().parent.parent.parent / "assets" / "fmnist"
#: class names of the masks: background, then the ten garments
MASK_CLASSES = ["background"] + sorted(p.name for p in (SLICE / "train").iterdir() if p.is_dir())


def write_fmnist_masks(out: Path, per_class_train: int = 100, per_class_val: int = 50) -> Path:
    """Masks of the first ``per_class_*`` images per class of each split; returns the manifest
    (``path,label,split,id,mask``; ids as the ImageFolder reader makes them), with the mask classes'
    names beside it (``mask_classes.txt``)."""
    out.mkdir(parents=True, exist_ok=True)
    rows = ["path,label,split,id,mask"]
    for split, per in (("train", per_class_train), ("val", per_class_val)):
        for label, cls in enumerate(MASK_CLASSES[1:]):
            for f in sorted((SLICE / split / cls).glob("*.png"))[:per]:
                grey = np.asarray(Image.open(f).convert("L"))
                mask = np.where(grey > 0, label + 1, 0).astype(np.uint8)
                dst = out / "masks" / split / cls / f.name
                dst.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(mask, mode="L").save(dst)
                rows.append(f"{f},{cls},{split},{cls}/{f.name},{dst.relative_to(out)}")
    manifest = out / "fmnist-seg.csv"
    manifest.write_text("\n".join(rows) + "\n")
    (out / MASK_CLASSES_FILE).write_text("\n".join(MASK_CLASSES) + "\n")
    return manifest


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--per-class-train", type=int, default=100)
    ap.add_argument("--per-class-val", type=int, default=50)
    a = ap.parse_args()
    print(f"wrote {write_fmnist_masks(a.out, a.per_class_train, a.per_class_val)}")
