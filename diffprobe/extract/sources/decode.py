"""Decoding an image and the paper's evaluation transform (short side resized, centre crop, [-1, 1])."""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, UnidentifiedImageError

from diffprobe.extract.augment import centre_crop
from diffprobe.extract.views import to_array


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
