"""Views of an item: view 0 is the evaluation transform, views 1..V−1 deterministic augmentations.

A view's parameters are a pure function of (seed, item id, view) — never of the batch, worker or
shard — so every extraction path writes the same bytes, and a view can be re-created from what the
store records (``view_params``, (N, V, P) float64; view 0's row is NaN: it has no parameters).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from diffprobe.extract.augment import Augmentation, Resample, centre_crop, get_augmentation

if TYPE_CHECKING:
    from diffprobe.store.side import SideArrays


def view_seed(seed: int, item_id: int | str, view: int) -> int:
    """A 63-bit generator seed that is a pure function of (seed, item id, view)."""
    key = f"diffprobe-view:{int(seed)}:{item_id}:{int(view)}".encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") >> 1


def to_array(img: Image.Image) -> np.ndarray:
    """(3, S, S) float32 in [-1, 1] from an RGB image."""
    arr = np.ascontiguousarray(np.asarray(img, dtype=np.float32).transpose(2, 0, 1))
    return arr / 127.5 - 1.0


@dataclass(frozen=True)
class ViewSpec:
    """How an extraction's V views of every item are made.

    Attributes:
        views: V ≥ 1 (1: the evaluation transform only, as without views).
        augment: the registered augmentation of views 1..V−1 (see :mod:`diffprobe.extract.augment`).
        seed: the extraction's seed (views and noise share it).
        size: the model's input size S.
    """

    views: int
    augment: str
    seed: int
    size: int

    @property
    def augmentation(self) -> Augmentation:
        return get_augmentation(self.augment)

    @classmethod
    def of_store(cls, store: SideArrays, split: str) -> ViewSpec:
        """The views a store's split was extracted with (from its recorded ``view_params``)."""
        how, params = store.view_params(split, slice(0, 1))
        return cls(int(params.shape[1]), how["augment"], how["seed"], how["size"])

    def params(self, item_id: str) -> np.ndarray:
        """(V, P) float64 parameters of an item's views; row 0 (the evaluation transform) is NaN."""
        aug = self.augmentation
        out = np.full((self.views, len(aug.fields)), np.nan)
        for v in range(1, self.views):
            out[v] = aug.draw(np.random.default_rng(view_seed(self.seed, item_id, v)), self.size)
        return out

    def render(self, img: Image.Image, params: np.ndarray, resample: Resample = Resample.BICUBIC) -> list[Image.Image]:
        """The V views of ``img`` (RGB, or a mask with ``resample`` NEAREST) for its ``params`` (V, P)."""
        aug = self.augmentation
        return [centre_crop(img, self.size, resample) if v == 0 else aug.apply(img, params[v], self.size, resample)
                for v in range(params.shape[0])]  # fmt: skip

    def images(self, img: Image.Image, item_id: str) -> np.ndarray:
        """(V, 3, S, S) float32 views of a decoded RGB image in [-1, 1]."""
        return np.stack([to_array(v) for v in self.render(img, self.params(item_id))])

    def masks(self, mask: Image.Image, item_id: str) -> np.ndarray:
        """(V, S, S) uint8 views of a segmentation mask, through the same geometry as the image's views."""
        return np.stack([np.asarray(v, dtype=np.uint8) for v in self.render(mask, self.params(item_id), Resample.NEAREST)])
