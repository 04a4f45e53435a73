"""Silently damaged images: high-bit-depth images are scaled to 8 bits by their range, never clipped.

A 16-bit grey PNG (mode I;16) was converted straight to RGB, every value clipped to 0 or 255, and
stored as valid. Each mode below is compared with the equivalent 8-bit image through the whole
evaluation transform (``load_image``): integer images by the range of their dtype (0..65535), float
images by [0, 1] when they lie in it, else by their own min..max.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from diffprobe.extract.sources.decode import load_image

#: an 8-bit grey gradient with every value 0..255, and an RGB image made of three of them
GREY = np.arange(256, dtype=np.uint8).reshape(16, 16)
RGB = np.stack([GREY, GREY.T, 255 - GREY], axis=-1)


def png16(array: np.ndarray) -> bytes:
    """A 16-bit PNG (grey (H, W) or RGB (H, W, 3)) written by hand: Pillow writes none with RGB."""
    h, w = array.shape[:2]
    raw = b"".join(b"\x00" + array[y].astype(">u2").tobytes() for y in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", w, h, 16, 2 if array.ndim == 3 else 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def write(path: Path, array: np.ndarray, fmt: str) -> Path:
    if fmt == "png16":
        path.write_bytes(png16(array))
    else:
        Image.fromarray(array).save(path, format=fmt)
    return path


CASES = {  # mode: (the high-bit-depth image, how it is written, the equivalent 8-bit image)
    "I;16 (16-bit grey PNG)": (GREY.astype(np.uint16) * 257, "png16", GREY),
    "I;16B (big-endian 16-bit TIFF)": ((GREY.astype(np.uint16) * 257).astype(">u2"), "TIFF", GREY),
    "I (32-bit integer TIFF holding 16-bit values)": (GREY.astype(np.int32) * 257, "TIFF", GREY),
    "F (float TIFF in [0, 1])": (GREY.astype(np.float32) / 255, "TIFF", GREY),
    "F (float TIFF in other units: its min..max)": (GREY.astype(np.float32) * 4.0 - 300.0, "TIFF", GREY),
    "RGB 16-bit (48-bit PNG)": (RGB.astype(np.uint16) * 257, "png16", RGB),
}


@pytest.mark.parametrize("mode", list(CASES))
def test_high_bit_depth_equals_the_equivalent_8_bit_image(mode, tmp_path):
    deep, fmt, eight = CASES[mode]
    high = write(tmp_path / f"high.{'png' if fmt == 'png16' else 'tif'}", deep, fmt)
    low = write(tmp_path / "low.png", eight, "PNG")
    if fmt == "png16":
        assert Image.open(high).mode == ("I;16" if deep.ndim == 2 else "RGB")
    np.testing.assert_array_equal(load_image(high, 16), load_image(low, 16))
    x = load_image(high, 16)
    assert x.min() == -1.0 and x.max() == 1.0  # the full range, not two clipped values
    assert len(np.unique(x)) > 200
