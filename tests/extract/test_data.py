"""Image sources and preprocessing."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from diffprobe.errors import DataError
from diffprobe.extract.dataset import ImageDataset
from diffprobe.extract.sources.decode import load_image
from diffprobe.extract.sources.discover import discover
from tests.helpers import FMNIST, golden


def test_preprocessing_matches_golden_inputs():
    """t10k images 0..3 of the bundled slice give exactly the official golden x0."""
    g = golden("adm32_fmnist")
    for i in range(4):
        (f,) = list((FMNIST / "val").glob(f"*/t10k_{i:05d}.png"))
        np.testing.assert_allclose(load_image(f, 32), g["x0"][i], atol=1e-6)


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "CMYK", "RGB", "I;16", "1"])
def test_every_mode_becomes_rgb(tmp_path, mode):
    rgb = Image.new("RGB", (40, 30), (200, 100, 50))
    img = rgb.convert(mode) if mode not in ("I;16",) else Image.new("I;16", (40, 30), 1000)
    ext = "jpg" if mode == "CMYK" else "tiff" if mode == "I;16" else "png"
    img.save(tmp_path / f"x.{ext}")
    x = load_image(tmp_path / f"x.{ext}", 16)
    assert x.shape == (3, 16, 16) and x.dtype == np.float32
    assert -1.0 <= x.min() and x.max() <= 1.0
    if mode in ("L", "1", "I;16"):
        assert np.array_equal(x[0], x[1]) and np.array_equal(x[1], x[2])


def test_resize_short_side_then_centre_crop(tmp_path):
    # left third black, middle white, right third black: a centre crop of a 90×30 image at 30 keeps the middle
    arr = np.zeros((30, 90, 3), np.uint8)
    arr[:, 30:60] = 255
    Image.fromarray(arr).save(tmp_path / "wide.png")
    x = load_image(tmp_path / "wide.png", 30)
    assert x.shape == (3, 30, 30) and np.allclose(x, 1.0)
    # short side resize: 60×120 → 16×32 → crop 16×16 from the middle
    Image.fromarray(np.full((120, 60, 3), 128, np.uint8)).save(tmp_path / "tall.png")
    assert load_image(tmp_path / "tall.png", 16).shape == (3, 16, 16)


def test_image_folder_with_split_folders_and_stable_ids():
    spec = discover(FMNIST)
    assert sorted(spec.splits) == ["train", "val"]
    assert len(spec.class_names) == 10 and spec.class_names[0] == "0_tshirt_top"
    assert len(spec.splits["train"]) == 1000 and len(spec.splits["val"]) == 500
    ids = [it.id for it in spec.splits["val"]]
    assert ids == sorted(ids) and ids[0].startswith("0_tshirt_top/")
    assert {it.label for it in spec.splits["val"]} == set(range(10))
    assert discover(FMNIST).fingerprint("val") == spec.fingerprint("val")


def test_image_folder_without_splits_and_non_images_skipped(tmp_path):
    for c in ("cat", "dog"):
        (tmp_path / c).mkdir()
        Image.new("RGB", (8, 8)).save(tmp_path / c / "a.png")
    (tmp_path / "cat" / "notes.txt").write_text("not an image")
    spec = discover(tmp_path)
    assert list(spec.splits) == ["train"] and spec.class_names == ["cat", "dog"]
    assert [it.id for it in spec.splits["train"]] == ["cat/a.png", "dog/a.png"]


def test_manifest_csv_and_tsv(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    Image.new("RGB", (8, 8)).save(tmp_path / "b.png")
    (tmp_path / "m.csv").write_text("path,label,split\nb.png,dog,val\na.png,cat,train\nb.png,,train\n")
    spec = discover(tmp_path / "m.csv")
    assert spec.class_names == ["cat", "dog"]
    assert [(it.id, it.label) for it in spec.splits["train"]] == [("a.png", 0), ("b.png", -1)]
    (tmp_path / "m.tsv").write_text("path\tlabel\na.png\t3\nb.png\t10\n")
    spec = discover(tmp_path / "m.tsv")
    assert spec.class_names == ["3", "10"] and [it.label for it in spec.splits["train"]] == [0, 1]


def test_manifest_id_column_names_items_wherever_they_live(tmp_path, caplog):
    """With an ``id`` column, ids (which seed the noise) do not change when the data moves."""
    specs = []
    for where in ("here", "elsewhere/deeper"):
        d = tmp_path / where
        d.mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(d / "a.png")
        (d / "m.csv").write_text(f"path,label,id\n{d / 'a.png'},cat,cats/a\n")
        specs.append(discover(d / "m.csv"))
    assert [[(it.id, it.label) for it in s.splits["train"]] for s in specs] == [[("cats/a", 0)]] * 2
    assert specs[0].fingerprint("train") == specs[1].fingerprint("train")
    assert "absolute paths" not in caplog.text
    (tmp_path / "abs.csv").write_text(f"path,label\n{tmp_path / 'here' / 'a.png'},cat\n")
    with caplog.at_level("WARNING"):
        assert discover(tmp_path / "abs.csv").splits["train"][0].id == (tmp_path / "here" / "a.png").as_posix()
    assert "absolute paths and no 'id' column" in caplog.text


@pytest.mark.parametrize(
    "text, match",
    [("file,label\na.png,x\n", "needs a header with a 'path' column"), ("path,label\n", "lists no images"),
     ("path,label\na.png,x\na.png,y\n", "listed twice"), ("path,label,id\na.png,x,p\nb.png,x,p\n", "id 'p' is listed twice"),
     ("path,label,id\na.png,x,\n", "line 2: empty id")],
)  # fmt: skip
def test_bad_manifests(tmp_path, text, match):
    (tmp_path / "m.csv").write_text(text)
    with pytest.raises(DataError, match=match):
        discover(tmp_path / "m.csv")


def test_missing_data_and_split(tmp_path):
    with pytest.raises(DataError, match="data not found"):
        discover(tmp_path / "nope")
    with pytest.raises(DataError, match="available: \\['train', 'val'\\]"):
        discover(FMNIST, ("test",))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images found"):
        discover(tmp_path / "empty")


def test_dataset_never_raises_on_bad_images(tmp_path):
    from diffprobe.extract.sources.item import Item

    good = next((FMNIST / "val" / "1_trouser").glob("*.png"))
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("hello")
    data = good.read_bytes()
    (tmp_path / "trunc.png").write_bytes(data[: len(data) // 2])
    items = [Item(p.name, str(p), 0) for p in (good, tmp_path / "empty.png", tmp_path / "text.jpg", tmp_path / "trunc.png", tmp_path / "gone.png")]
    ds = ImageDataset(items, 32)
    oks = [ds[i][2] for i in range(len(ds))]
    assert oks == [True, False, False, False, False]
    assert all(ds[i][3] for i in range(1, 5))
