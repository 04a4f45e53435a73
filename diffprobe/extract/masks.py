"""Segmentation masks: read through the image transform's geometry, one split at a time."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from diffprobe.errors import DataError
from diffprobe.extract.augment import centre_crop
from diffprobe.extract.sources.item import Item
from diffprobe.extract.views import ViewSpec


def open_mask(path: str | Path) -> Image.Image:
    """A segmentation mask file as a one-channel uint8 image of class indices (255: ignore)."""
    with Image.open(path) as im:
        arr = np.asarray(im)
    if arr.ndim != 2:
        raise DataError(f"mask {path} has shape {arr.shape}: expected one channel of class indices (mode L or P)")
    if arr.max(initial=0) > 255 or arr.min(initial=0) < 0:
        raise DataError(f"mask {path} has values outside 0..255")
    return Image.fromarray(arr.astype(np.uint8))


def load_mask(path: str | Path, size: int) -> np.ndarray:
    """A segmentation mask through the image transform's geometry: the short side resized to
    ``size`` (nearest neighbour, so classes never blend), the same centre crop.

    Returns:
        (size, size) uint8 class indices (255 stays the ignore index).
    """
    return np.asarray(centre_crop(open_mask(path), size, Image.Resampling.NEAREST), dtype=np.uint8).copy()


def split_masks(items: Sequence[Item], size: int, views: ViewSpec | None = None) -> np.ndarray:
    """(N, size, size) uint8 masks of ``items`` (all of them must have one); (N, V, size, size) with
    ``views`` of V > 1, each view through the same geometry as that view of the image.

    Raises:
        DataError: an item without a mask, or a mask that cannot be read (the message names it).
    """
    many = views is not None and views.views > 1
    out = np.empty((len(items), *((views.views,) if many else ()), size, size), np.uint8)  # type: ignore[union-attr]
    for i, it in enumerate(items):
        if not it.mask:
            raise DataError(f"item {it.id!r} has no mask, while others of its split have one: give every item a mask")
        try:
            out[i] = views.masks(open_mask(it.mask), it.id) if many else load_mask(it.mask, size)  # type: ignore[union-attr]
        except (OSError, ValueError, UnidentifiedImageError) as e:
            raise DataError(f"cannot read the mask {it.mask} of {it.id!r}: {e}") from None
    return out
