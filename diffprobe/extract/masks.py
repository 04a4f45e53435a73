"""Segmentation masks: read through the image transform's geometry, one split at a time."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from diffprobe.errors import DataError
from diffprobe.extract.data import Item


def load_mask(path: str | Path, size: int) -> np.ndarray:
    """A segmentation mask through the image transform's geometry: the short side resized to
    ``size`` (nearest neighbour, so classes never blend), the same centre crop.

    Returns:
        (size, size) uint8 class indices (255 stays the ignore index).
    """
    with Image.open(path) as im:
        arr = np.asarray(im)
    if arr.ndim != 2:
        raise DataError(f"mask {path} has shape {arr.shape}: expected one channel of class indices (mode L or P)")
    if arr.max(initial=0) > 255 or arr.min(initial=0) < 0:
        raise DataError(f"mask {path} has values outside 0..255")
    img = Image.fromarray(arr.astype(np.uint8))
    w, h = img.size
    if min(w, h) != size:
        nw, nh = (size, int(size * h / w)) if w <= h else (int(size * w / h), size)
        img = img.resize((nw, nh), Image.Resampling.NEAREST)
        w, h = nw, nh
    left, top = int(round((w - size) / 2.0)), int(round((h - size) / 2.0))
    if (w, h) != (size, size):
        img = img.crop((left, top, left + size, top + size))
    return np.asarray(img, dtype=np.uint8).copy()


def split_masks(items: list[Item], size: int) -> np.ndarray:
    """(N, size, size) uint8 masks of ``items`` (all of them must have one).

    Raises:
        DataError: an item without a mask, or a mask that cannot be read (the message names it).
    """
    out = np.empty((len(items), size, size), np.uint8)
    for i, it in enumerate(items):
        if not it.mask:
            raise DataError(f"item {it.id!r} has no mask, while others of its split have one: give every item a mask")
        try:
            out[i] = load_mask(it.mask, size)
        except (OSError, ValueError, UnidentifiedImageError) as e:
            raise DataError(f"cannot read the mask {it.mask} of {it.id!r}: {e}") from None
    return out
