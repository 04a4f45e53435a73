"""synthetic:TRAIN[,VAL]@SIZE[/CLASSES]: deterministic generated images at any count, separable by class."""

from __future__ import annotations

import numpy as np
import pytest

from diffprobe.errors import DataError
from diffprobe.extract.sources.decode import load_image
from diffprobe.extract.sources.discover import discover
from diffprobe.extract.sources.kinds import open_item


def test_items_ids_labels_and_images_are_pure_functions_of_the_spec():
    spec = discover("synthetic:300,50@16/3")
    assert {s: len(v) for s, v in spec.splits.items()} == {"train": 300, "val": 50} and spec.class_names == ["class0000", "class0001", "class0002"]
    it = spec.splits["train"][7]
    assert (it.id, it.label, it.kind) == ("train/00000007", 1, "synthetic")
    a, b = load_image(open_item(it), 16), load_image(open_item(discover("synthetic:300,50@16/3").splits["train"][7]), 16)
    assert a.shape == (3, 16, 16) and np.array_equal(a, b)
    assert not np.array_equal(a, load_image(open_item(spec.splits["train"][10]), 16))  # same class, other item: its own jitter


def test_classes_are_separable_by_construction():
    spec = discover("synthetic:90@8/3")
    x = np.stack([load_image(open_item(it), 8).mean(axis=(1, 2)) for it in spec.splits["train"]])  # mean colour per item
    y = np.array([it.label for it in spec.splits["train"]])
    centres = np.stack([x[y == k].mean(0) for k in range(3)])
    nearest = np.argmin(((x[:, None] - centres[None]) ** 2).sum(-1), axis=1)
    assert (nearest == y).all()


@pytest.mark.parametrize("text", ["synthetic:", "synthetic:10@", "synthetic:0@8", "synthetic:10@8/1", "synthetic:ten@8"])
def test_a_bad_spec_says_the_form(text):
    with pytest.raises(DataError, match=r"synthetic:TRAIN\[,VAL\]@SIZE\[/CLASSES\]|at least 1 training item"):
        discover(text)
