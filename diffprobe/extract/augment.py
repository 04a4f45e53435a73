"""Training augmentations for cached views: a registry of deterministic, recordable image transforms.

An augmentation draws its parameters (a few floats, relative to the image, so they need not know its
size) from a generator, and applies them to a PIL image — the photo with bicubic resampling, its
segmentation mask with nearest-neighbour resampling, so crops stay aligned with masks. Parameters
are a pure function of (seed, item id, view): see :mod:`diffprobe.extract.views`.

Adding one takes a few lines::

    @register_augmentation("vflip", fields=("flip",))
    class VerticalFlip:
        def draw(self, rng, size):
            return (float(rng.random() < 0.5),)

        def apply(self, img, params, size, resample):
            img = centre_crop(img, size, resample)
            return img.transpose(Image.Transpose.FLIP_TOP_BOTTOM) if params["flip"] else img
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from PIL import Image

from diffprobe.errors import ConfigError
from diffprobe.registry import Registry

Resample = Image.Resampling


class AugmentFn(Protocol):
    """What an augmentation implements."""

    def draw(self, rng: np.random.Generator, size: int) -> tuple[float, ...]:
        """One view's parameters, in the order of the registered ``fields``."""

    def apply(self, img: Image.Image, params: Mapping[str, float], size: int, resample: Resample) -> Image.Image:
        """The ``size`` × ``size`` view of ``img`` for ``params``."""


@dataclass(frozen=True)
class Augmentation:
    """A registered augmentation: its name, the names of its parameters, and its implementation."""

    name: str
    fields: tuple[str, ...]
    fn: AugmentFn
    help: str = ""

    def draw(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """(P,) float64 parameters of one view."""
        values = tuple(float(v) for v in self.fn.draw(rng, size))
        if len(values) != len(self.fields):
            raise ConfigError(f"augmentation {self.name!r} drew {len(values)} parameters, expected {len(self.fields)} ({', '.join(self.fields)})")
        return np.array(values, dtype=np.float64)

    def apply(self, img: Image.Image, params: np.ndarray, size: int, resample: Resample = Resample.BICUBIC) -> Image.Image:
        """The view of ``img`` for ``params`` (P,) at ``size`` × ``size``."""
        out = self.fn.apply(img, dict(zip(self.fields, (float(v) for v in params))), size, resample)
        if out.size != (size, size):
            raise ConfigError(f"augmentation {self.name!r} made a {out.size[0]}×{out.size[1]} view, expected {size}×{size}")
        return out


#: Every augmentation by name (``--augment``).
AUGMENTATIONS: Registry[Augmentation] = Registry("augmentation", sort=True)


def register_augmentation(name: str, fields: tuple[str, ...], help: str = "") -> Callable[[type], type]:
    """Class decorator: register an augmentation (a class with ``draw`` and ``apply``) under ``name``."""

    def deco(cls: type) -> type:
        doc = (cls.__doc__ or "").strip().splitlines()
        AUGMENTATIONS.register(name, Augmentation(name, tuple(fields), cls(), help or (doc[0] if doc else "")))
        return cls

    return deco


def get_augmentation(name: str) -> Augmentation:
    """The augmentation called ``name``."""
    return AUGMENTATIONS.get(name)


# -- geometry shared by the augmentations and the evaluation transform --------------------------------
def resize_short(img: Image.Image, side: int, resample: Resample) -> Image.Image:
    """Resize so that the short side is ``side`` (aspect kept, long side truncated as the evaluation transform does)."""
    w, h = img.size
    if min(w, h) == side:
        return img
    nw, nh = (side, int(side * h / w)) if w <= h else (int(side * w / h), side)
    return img.resize((nw, nh), resample)


def centre_crop(img: Image.Image, size: int, resample: Resample) -> Image.Image:
    """The evaluation transform's geometry: short side to ``size``, then the centred ``size`` crop."""
    img = resize_short(img, size, resample)
    w, h = img.size
    if (w, h) == (size, size):
        return img
    left, top = int(round((w - size) / 2.0)), int(round((h - size) / 2.0))
    return img.crop((left, top, left + size, top + size))


def flipped(img: Image.Image, flip: float) -> Image.Image:
    return img.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if flip >= 0.5 else img


def _offset(u: float, room: int) -> int:
    """An integer offset in [0, room] from u ∈ [0, 1)."""
    return min(int(math.floor(u * (room + 1))), room)


# -- the registered augmentations --------------------------------------------------------------------
@register_augmentation("paper", ("short_side", "x", "y", "flip"))
class PaperCrop:
    """guided-diffusion's training crop: short side to size/f, f ∈ [0.8, 1], a random size crop, a random flip."""

    min_frac, max_frac = 0.8, 1.0

    def draw(self, rng: np.random.Generator, size: int) -> tuple[float, ...]:
        lo, hi = math.ceil(size / self.max_frac), math.ceil(size / self.min_frac)
        return float(rng.integers(lo, hi + 1)), float(rng.random()), float(rng.random()), float(rng.random() < 0.5)

    def apply(self, img: Image.Image, params: Mapping[str, float], size: int, resample: Resample) -> Image.Image:
        img = resize_short(img, int(params["short_side"]), resample)
        w, h = img.size
        x, y = _offset(params["x"], w - size), _offset(params["y"], h - size)
        return flipped(img.crop((x, y, x + size, y + size)), params["flip"])


@register_augmentation("rrc", ("scale", "log_ratio", "x", "y", "flip"))
class RandomResizedCrop:
    """SSL linear evaluation's RandomResizedCrop(scale=(0.08, 1), ratio=(3/4, 4/3)) and a random flip."""

    scale = (0.08, 1.0)
    ratio = (3 / 4, 4 / 3)

    def draw(self, rng: np.random.Generator, size: int) -> tuple[float, ...]:
        s = rng.uniform(*self.scale)
        r = rng.uniform(math.log(self.ratio[0]), math.log(self.ratio[1]))
        return float(s), float(r), float(rng.random()), float(rng.random()), float(rng.random() < 0.5)

    def apply(self, img: Image.Image, params: Mapping[str, float], size: int, resample: Resample) -> Image.Image:
        w, h = img.size
        area, ratio = params["scale"] * w * h, math.exp(params["log_ratio"])
        # A box that does not fit is clamped to the image (torchvision retries, then falls back to a centre crop).
        cw = max(1, min(w, int(round(math.sqrt(area * ratio)))))
        ch = max(1, min(h, int(round(math.sqrt(area / ratio)))))
        x, y = _offset(params["x"], w - cw), _offset(params["y"], h - ch)
        return flipped(img.resize((size, size), resample, box=(x, y, x + cw, y + ch)), params["flip"])


@register_augmentation("flip", ("flip",))
class Flip:
    """The evaluation centre crop, flipped left-right with probability 1/2."""

    def draw(self, rng: np.random.Generator, size: int) -> tuple[float, ...]:
        return (float(rng.random() < 0.5),)

    def apply(self, img: Image.Image, params: Mapping[str, float], size: int, resample: Resample) -> Image.Image:
        return flipped(centre_crop(img, size, resample), params["flip"])


@register_augmentation("none", ())
class NoAugmentation:
    """Every view is the evaluation centre crop (views then differ only in their noise)."""

    def draw(self, rng: np.random.Generator, size: int) -> tuple[float, ...]:
        return ()

    def apply(self, img: Image.Image, params: Mapping[str, float], size: int, resample: Resample) -> Image.Image:
        return centre_crop(img, size, resample)
