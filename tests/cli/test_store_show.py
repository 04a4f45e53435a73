"""`diffprobe store show STORE ITEM [--views]`: an item's record, and its views re-made exactly as
extraction fed them (pixels checked against the extraction's own dataset), as a PNG grid."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import diffprobe
from diffprobe.cli import main
from diffprobe.errors import DataError, StoreKeyError
from diffprobe.extract.dataset import ImageDataset
from diffprobe.extract.sources.decode import load_image
from diffprobe.extract.sources.discover import discover
from diffprobe.extract.sources.fmnist_masks import write_fmnist_masks
from diffprobe.extract.views import ViewSpec
from diffprobe.pipelines.extraction.show import find_item, item_views
from tests.helpers import extract_config, make_manifest

KW = dict(timesteps=(90,), blocks=(1,), pools=(1,), unit_size=16)  # block 1: the forward stops after the first conv


@pytest.fixture(scope="module")
def views_store(tmp_path_factory) -> tuple[Path, Path]:
    """(store, manifest): 10 val images with garment masks, 4 views each (augment paper)."""
    root = tmp_path_factory.mktemp("show")
    manifest = write_fmnist_masks(root / "data", per_class_train=0, per_class_val=1)
    out = root / "v4.zarr"
    diffprobe.extract_features(extract_config(manifest, out, views=4, **KW), progress=False)
    return out, manifest


@pytest.fixture(scope="module")
def one_view_store(tmp_path_factory) -> tuple[Path, Path]:
    """(store, manifest): 10 train + 10 val images, one view each, no masks."""
    root = tmp_path_factory.mktemp("show1")
    (root / "data").mkdir()
    manifest = make_manifest(root / "data" / "small.csv", per_class_train=1, per_class_val=1)
    out = root / "v1.zarr"
    diffprobe.extract_features(extract_config(manifest, out, **KW), progress=False)
    return out, manifest


def _show(*args: str) -> tuple[int, str]:
    r = CliRunner().invoke(main, ["store", "show", *map(str, args)])
    return r.exit_code, r.output


def test_views_are_the_images_extraction_fed(views_store):
    store, manifest = views_store
    items = {it.id: it for it in discover(manifest, ("val",)).splits["val"]}
    with diffprobe.open_store(store) as s:
        spec = ViewSpec.of_store(s, "val")
        dataset = ImageDataset(list(items.values()), 32, views=spec)
        for row in (0, 7):
            views = item_views(s, "val", row)
            assert views.shape == (4, 32, 32, 3) and views.dtype == np.uint8
            fed = views.transpose(0, 3, 1, 2).astype(np.float32) / 127.5 - 1.0  # what the model saw
            item_id = str(s.ids("val")[row])
            _, x, ok, _, _ = dataset[list(items).index(item_id)]
            assert ok and np.array_equal(fed, x)  # the extraction's own loader, pixel for pixel
            assert not any(np.array_equal(views[0], views[v]) for v in (1, 2, 3))  # augmented views differ


def test_show_views_writes_one_panel_per_view_and_per_mask(views_store, tmp_path, monkeypatch, figures):
    store, _ = views_store
    monkeypatch.chdir(tmp_path)
    code, out = _show(store, "#2", "--views")
    assert code == 0, out
    with diffprobe.open_store(store) as s:
        item_id = str(s.ids("val")[2])
    png = f"v4-{item_id.replace('/', '_').removesuffix('.png')}-views.png"
    assert f"wrote {png}" in out and (tmp_path / png).is_file()
    axes = figures[png].axes
    titles = [a.get_title() for a in axes]
    assert len(axes) == 8  # a row of 4 views, a row of their 4 stored masks
    assert titles[0] == "view 0 (eval)" and titles[1].startswith("view 1: short_side=") and titles[4:] == [f"mask {v}" for v in range(4)]


def test_show_prints_the_record(views_store):
    store, _ = views_store
    code, out = _show(store, "t10k_00019.png")  # the unique id ending in /t10k_00019.png
    assert code == 0, out
    assert "item 0_tshirt_top/t10k_00019.png (split val, row #0 of 10" in out and "label  0 (0_tshirt_top)" in out
    assert "valid  yes" in out and "t0090_b01_p1       4×64×1×1" in out and "(V×C×h×w)" in out and "mask               4×32×32" in out
    assert "views  4 (augment paper, size 32, seed 0)" in out and "view 0   centre crop (evaluation)" in out
    assert "view 3   short_side=" in out and "wrote" not in out


def test_unknown_items_and_splits_are_clean_errors(views_store, one_view_store):
    store, _ = views_store
    code, out = _show(store, "nope")
    assert code == 1 and "no item 'nope' in split 'val'" in out and "10 items ('0_tshirt_top/t10k_00019.png'" in out and "#0..#9" in out
    assert "Traceback" not in out
    code, out = _show(store, "#10")
    assert code == 1 and "past the end" in out
    code, out = _show(store, "#1", "--split", "train")
    assert code == 1 and "no split 'train'" in out and "splits: val" in out
    code, out = _show(one_view_store[0], "#1")
    assert code == 1 and "has splits train, val: pass --split" in out
    with diffprobe.open_store(store) as s, pytest.raises(StoreKeyError, match="no item"):
        find_item(s, "val", "t10k")


def test_one_view_store_and_moved_data(one_view_store, tmp_path, figures):
    store, manifest = one_view_store
    code, out = _show(store, "#3", "--split", "val", "--views", "--out", tmp_path / "g.png")
    assert code == 0, out
    assert "the store has one view per item" in out and len(figures["g.png"].axes) == 1
    with diffprobe.open_store(store) as s:
        views = item_views(s, "val", 3)
        path = str(s.paths("val")[3])
    assert views.shape == (1, 32, 32, 3) and np.array_equal(views[0].transpose(2, 0, 1) / np.float32(127.5) - np.float32(1), load_image(path, 32))
    moved = manifest.parent.rename(manifest.parent.with_name("moved"))
    try:
        code, out = _show(store, "#3", "--split", "val", "--views", "--out", tmp_path / "h.png")
        assert code == 1 and "data not found" in out and "pass --data" in out and "Traceback" not in out
        code, out = _show(store, "#3", "--split", "val", "--views", "--out", tmp_path / "h.png", "--data", moved / manifest.name)
        assert code == 0, out
        with diffprobe.open_store(store) as s:
            item_id = str(s.ids("val")[3])
            other = moved / "other.csv"  # other data: its val split lacks the item
            other.write_text("".join(line for line in (moved / manifest.name).open() if item_id not in line))
            with pytest.raises(DataError, match="not in split 'val'.*pass --data with the data the store was made from"):
                item_views(s, "val", 3, data=str(other))
    finally:
        moved.rename(manifest.parent)


def test_store_info_shows_the_views(views_store, one_view_store):
    r = CliRunner().invoke(main, ["store", "info", str(views_store[0])])
    assert r.exit_code == 0 and "views: 4 per item (view 0 the evaluation centre crop; views 1..3 augment paper)" in r.output
    info = json.loads(CliRunner().invoke(main, ["store", "info", str(views_store[0]), "--json"]).output)
    assert info["views"] == 4 and info["augment"] == "paper"
    assert "views:" not in CliRunner().invoke(main, ["store", "info", str(one_view_store[0])]).output
