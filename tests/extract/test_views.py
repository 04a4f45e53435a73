"""Augmentations and views: deterministic parameters, the paper's geometry, masks aligned with images."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from diffprobe.errors import ConfigError
from diffprobe.extract.augment import AUGMENTATIONS, centre_crop, get_augmentation, register_augmentation
from diffprobe.extract.dataset import ImageDataset
from diffprobe.extract.noise import item_seed
from diffprobe.extract.sources.decode import load_image
from diffprobe.extract.sources.item import Item
from diffprobe.extract.views import ViewSpec, view_seed
from tests.helpers import extract_config


def _photo(w: int = 40, h: int = 30) -> Image.Image:
    """An image whose every pixel is distinct, so crops and flips are visible in the values."""
    yy, xx = np.mgrid[0:h, 0:w]
    return Image.fromarray(np.stack([xx * 6 % 256, yy * 8 % 256, (xx + yy) * 3 % 256], -1).astype(np.uint8))


def test_view_parameters_are_a_pure_function_of_seed_id_and_view():
    a = ViewSpec(6, "paper", 0, 32)
    p = a.params("train/x.png")
    assert p.shape == (6, 4) and np.isnan(p[0]).all() and not np.isnan(p[1:]).any()
    assert np.array_equal(p, ViewSpec(6, "paper", 0, 32).params("train/x.png"), equal_nan=True)  # no hidden state
    assert np.array_equal(p[:3], ViewSpec(3, "paper", 0, 32).params("train/x.png"), equal_nan=True)  # V does not change views 1..V-1
    assert not np.array_equal(p[1:], ViewSpec(6, "paper", 1, 32).params("train/x.png")[1:])  # the seed does
    assert not np.array_equal(p[1:], a.params("train/y.png")[1:])  # and the item
    assert view_seed(0, "a", 1) != view_seed(0, "a", 2)


def test_view_zero_noise_is_the_noise_of_a_store_without_views():
    assert item_seed(3, "a.png", 90, 1, view=0) == item_seed(3, "a.png", 90, 1)
    assert len({item_seed(3, "a.png", 90, d, view=v) for v in range(3) for d in range(3)}) == 9


def test_paper_parameters_follow_guided_diffusion_ranges():
    params = ViewSpec(400, "paper", 0, 32).params("item")[1:]
    short, x, y, flip = params.T
    assert short.min() == math.ceil(32 / 1.0) and short.max() == math.ceil(32 / 0.8)  # f ∈ [0.8, 1]: short side 32..40
    assert set(np.unique(flip)) == {0.0, 1.0} and 0.35 < flip.mean() < 0.65
    assert (0 <= x).all() and (x < 1).all() and (0 <= y).all() and (y < 1).all()


def test_paper_view_is_resize_then_crop_then_flip():
    img = _photo(40, 30)
    aug = get_augmentation("paper")
    out = np.asarray(aug.apply(img, np.array([36, 0.99, 0.0, 1.0]), 32))
    resized = np.asarray(img.resize((48, 36), Image.Resampling.BICUBIC))  # short side 30 → 36
    expect = resized[0:32, 16:48][:, ::-1]  # x = 0.99 → the right-most offset (48 − 32); flipped
    assert np.array_equal(out, expect)


def test_rrc_crops_a_box_and_resizes_it():
    img = _photo(64, 64)
    rrc = get_augmentation("rrc")
    out = np.asarray(rrc.apply(img, np.array([0.25, 0.0, 0.0, 0.0, 0.0]), 16))  # a 32×32 box at the origin
    assert np.array_equal(out, np.asarray(img.resize((16, 16), Image.Resampling.BICUBIC, box=(0, 0, 32, 32))))
    params = ViewSpec(300, "rrc", 0, 32).params("item")[1:]
    assert params[:, 0].min() >= 0.08 and params[:, 0].max() <= 1
    assert np.abs(params[:, 1]).max() <= math.log(4 / 3) + 1e-12


def test_flip_and_none_keep_the_centre_crop():
    img = _photo(40, 30)
    centre = np.asarray(centre_crop(img, 24, Image.Resampling.BICUBIC))
    assert np.array_equal(np.asarray(get_augmentation("flip").apply(img, np.array([1.0]), 24)), centre[:, ::-1])
    assert np.array_equal(np.asarray(get_augmentation("flip").apply(img, np.array([0.0]), 24)), centre)
    assert np.array_equal(np.asarray(get_augmentation("none").apply(img, np.array([]), 24)), centre)


def test_view_zero_is_the_evaluation_transform(tmp_path):
    _photo(40, 30).save(tmp_path / "a.png")
    views = ViewSpec(3, "paper", 0, 24)
    ds = ImageDataset([Item("a.png", str(tmp_path / "a.png"), 0)], 24, views=views)
    _, x, ok, _, _ = ds[0]
    assert ok and x.shape == (3, 3, 24, 24)
    assert np.array_equal(x[0], load_image(tmp_path / "a.png", 24))
    assert not np.array_equal(x[1], x[0])


def test_masks_follow_their_views_geometry():
    """A mask whose classes are the image's own columns stays aligned through every crop and flip."""
    img = _photo(40, 30)
    cols = Image.fromarray(np.tile((np.arange(40) * 6 % 256).astype(np.uint8), (30, 1)))  # = the image's red channel
    for name in ("paper", "rrc", "flip"):
        vs = ViewSpec(6, name, 0, 24)
        params = vs.params("m")
        imgs = [np.asarray(v) for v in vs.render(img, params, Image.Resampling.NEAREST)]
        masks = vs.masks(cols, "m")
        assert masks.shape == (6, 24, 24) and masks.dtype == np.uint8
        for v in range(6):
            assert np.array_equal(masks[v], imgs[v][..., 0]), (name, v)


def test_a_user_augmentation_takes_a_few_lines():
    @register_augmentation("test-vflip", fields=("flip",))
    class VerticalFlip:
        def draw(self, rng, size):
            return (float(rng.random() < 0.5),)

        def apply(self, img, params, size, resample):
            img = centre_crop(img, size, resample)
            return img.transpose(Image.Transpose.FLIP_TOP_BOTTOM) if params["flip"] else img

    try:
        vs = ViewSpec(8, "test-vflip", 0, 16)
        x = vs.images(_photo(), "item")
        flips = vs.params("item")[1:, 0]
        for v, f in enumerate(flips, start=1):
            assert np.array_equal(x[v], x[0][:, ::-1] if f else x[0])
        extract_config("data", "out.zarr", views=2, augment="test-vflip")  # accepted by the config
    finally:
        del AUGMENTATIONS["test-vflip"]


def test_bad_view_options_are_clear_errors():
    with pytest.raises(ConfigError, match="unknown augmentation 'crop'; valid: flip, none, paper, rrc"):
        extract_config("data", "out.zarr", views=4, augment="crop")
    with pytest.raises(ConfigError, match="views must be >= 1"):
        extract_config("data", "out.zarr", views=0)
