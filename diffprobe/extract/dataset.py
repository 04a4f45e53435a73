"""The extraction loader's dataset: decoded (and augmented) images with their diffusion noise."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from diffprobe.extract.sources.decode import DECODE_ERRORS, decode_image, load_image
from diffprobe.extract.sources.item import Item
from diffprobe.extract.sources.kinds import open_item
from diffprobe.extract.views import ViewSpec

if TYPE_CHECKING:
    from diffprobe.extract.noise import Pass


class ImageDataset:
    """Map-style dataset of (index, images, ok, error, noise) for a DataLoader; bad images never raise.

    Images are (3, S, S) float32 — or (V, 3, S, S) with ``views`` of V > 1 (view 0 the evaluation
    transform, the others its augmentation). With ``noise`` = ((view, t, draw), …) and a seed, each
    item also carries its diffusion noise for those passes, (P, *noise_shape) float32 (default
    (3, S, S); a latent model's latent shape) — generated here, in the loader's worker processes, so
    that the device never waits for it. Without (an image model, which adds no noise), it is an
    empty (0, *noise_shape) array.
    """

    def __init__(self, items: Sequence[Item], size: int, noise: tuple[Pass, ...] = (), seed: int = 0,
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
