"""Decoding an image and the paper's evaluation transform (short side resized, centre crop, [-1, 1])."""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, UnidentifiedImageError

from diffprobe.extract.augment import centre_crop
from diffprobe.extract.views import to_array

#: Pillow's 16-bit integer modes (grey): their range is 0..65535
_WORD_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})


def decode_image(path: str | Path | BinaryIO) -> Image.Image:
    """Decode an image file (or file object) fully, as 8-bit RGB.

    High-bit-depth images are scaled to 8 bits by their range, never clipped (Pillow's own RGB
    conversion would clip a 16-bit grey image to 0/255): see :func:`to_eight_bit`.

    Raises:
        OSError / ValueError / UnidentifiedImageError for unreadable, empty or truncated files.
    """
    with Image.open(path) as im:
        im.load()  # decode now: truncated files raise here
        return to_eight_bit(im).convert("RGB")


def to_eight_bit(im: Image.Image) -> Image.Image:
    """An image of more than 8 bits per channel as 8-bit grey ("L"), scaled by its range; others as they are.

    - 16-bit grey (``I;16``, ``I;16B`` …): the dtype's range, 0..65535 → 0..255, ``round(v · 255 / 65535)``.
    - 32-bit integer (``I``, which is how Pillow opens some 16-bit files): 0..65535 as above when every
      value lies in it, else the image's own min..max.
    - float (``F``, e.g. 32-bit TIFFs): 0..1 → 0..255 when every value lies in [0, 1] (the usual
      convention for float images), else the image's own min..max; NaN/Inf count as the minimum.

    16-bit RGB(A) files need nothing here: Pillow decodes them to 8-bit RGB(A) itself, keeping the
    high byte of each value (0..65535 → 0..255 too).
    """
    if im.mode not in _WORD_MODES and im.mode not in ("I", "F"):
        return im
    a = np.asarray(im).astype(np.float64)
    finite = np.isfinite(a)
    a = np.where(finite, a, np.nan)
    lo, hi = (float(np.nanmin(a)), float(np.nanmax(a))) if finite.any() else (0.0, 0.0)
    if im.mode in _WORD_MODES or (im.mode == "I" and lo >= 0 and hi <= 65535):
        lo, hi = 0.0, 65535.0
    elif im.mode == "F" and lo >= 0 and hi <= 1:
        lo, hi = 0.0, 1.0
    scaled = np.rint((np.nan_to_num(a, nan=lo) - lo) * (255.0 / (hi - lo))) if hi > lo else np.zeros(a.shape)
    return Image.fromarray(scaled.astype(np.uint8), "L")


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
