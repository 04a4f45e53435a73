"""Write the bundled Fashion-MNIST slice (diffprobe/assets/fmnist) from the original idx files.

Source: Debian's `dataset-fashion-mnist` package (`apt-get install dataset-fashion-mnist`), which
installs the original Zalando idx files in /usr/share/datasets/fashion-mnist/. Each 28×28 grey image
is padded by 2 background pixels to 32×32 (as the bundled model was trained) and saved as a PNG in an
ImageFolder tree: ``train/`` takes the first PER_CLASS_TRAIN images of each class from the 60k
training file, ``val/`` the first PER_CLASS_VAL of each class from the 10k test file. File names keep
the original index (``t10k_00000.png`` is test image 0).

Run: python scripts/make_fmnist_slice.py [SRC_DIR] [OUT_DIR]
"""

from __future__ import annotations

import gzip
import sys
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ["tshirt_top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle_boot"]
PER_CLASS_TRAIN = 100
PER_CLASS_VAL = 50


def read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def write_split(images: np.ndarray, labels: np.ndarray, per_class: int, prefix: str, out: Path) -> int:
    n = 0
    for c, name in enumerate(CLASSES):
        folder = out / f"{c}_{name}"
        folder.mkdir(parents=True, exist_ok=True)
        for idx in np.flatnonzero(labels == c)[:per_class]:
            Image.fromarray(np.pad(images[idx], 2)).save(folder / f"{prefix}_{idx:05d}.png", optimize=True)
            n += 1
    return n


def main() -> None:
    src = Path(sys.argv[1] if len(sys.argv) > 1 else "/usr/share/datasets/fashion-mnist")
    out = Path(sys.argv[2] if len(sys.argv) > 2 else Path(__file__).parent.parent / "diffprobe/assets/fmnist")
    tr = write_split(read_idx(src / "train-images-idx3-ubyte.gz"), read_idx(src / "train-labels-idx1-ubyte.gz"), PER_CLASS_TRAIN, "train", out / "train")
    va = write_split(read_idx(src / "t10k-images-idx3-ubyte.gz"), read_idx(src / "t10k-labels-idx1-ubyte.gz"), PER_CLASS_VAL, "t10k", out / "val")
    print(f"wrote {tr} train and {va} val images to {out}")


if __name__ == "__main__":
    main()
