"""Dense probes: masks as data (folders, manifests, the image transform's geometry), masks in the
store, segmentation metrics, streamed training, and a real offline task — Fashion-MNIST garments."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import diffprobe
from diffprobe.cli import main
from diffprobe.errors import DataError
from diffprobe.extract.masks import load_mask
from diffprobe.extract.sources.decode import load_image
from diffprobe.extract.sources.discover import discover
from diffprobe.extract.sources.fmnist_masks import write_fmnist_masks
from diffprobe.probes.dense.metrics import confusion, segmentation_metrics
from diffprobe.probes.dense.source import DenseSource
from tests.helpers import extract_config


def test_masks_follow_the_image_geometry_with_nearest_neighbour(tmp_path):
    h, w = 40, 64  # landscape: the short side is resized to 32, then the centre 32×32 is cropped
    cls = np.zeros((h, w), np.uint8)
    cls[:, 40:] = 7
    cls[0:4, 0:4] = 255  # ignored pixels stay ignored
    img = np.stack([cls * 30] * 3, -1).astype(np.uint8)
    Image.fromarray(img).save(tmp_path / "a.png")
    Image.fromarray(cls, mode="L").save(tmp_path / "m.png")
    m, x = load_mask(tmp_path / "m.png", 32), load_image(tmp_path / "a.png", 32)
    assert m.shape == (32, 32) and m.dtype == np.uint8 and set(np.unique(m)) <= {0, 7, 255}  # nearest: no blended classes
    bright = x[0] > 0  # where the (bicubic) image is the class-7 region, the mask is 7 — the same crop
    assert (m[:, -5:] == 7).all() and (m[:, :5] != 7).all() and bright[:, -5:].all()


def test_segmentation_folders_and_manifests_carry_masks(tmp_path):
    for split in ("train", "val"):
        for d in ("images", "masks"):
            (tmp_path / "seg" / split / d).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (8, 8)).save(tmp_path / "seg" / split / "images" / f"x{i}.jpg")
            Image.new("L", (8, 8), i).save(tmp_path / "seg" / split / "masks" / f"x{i}.png")
    spec = discover(tmp_path / "seg")
    assert sorted(spec.splits) == ["train", "val"] and [it.id for it in spec.splits["val"]] == ["x0.jpg", "x1.jpg", "x2.jpg"]
    assert spec.splits["val"][1].mask.endswith("val/masks/x1.png") and spec.splits["val"][1].label == -1
    (tmp_path / "seg" / "val" / "masks" / "x2.png").unlink()
    with pytest.raises(DataError, match="has no mask"):
        discover(tmp_path / "seg")
    manifest = write_fmnist_masks(tmp_path / "fm", per_class_train=1, per_class_val=1)
    items = discover(manifest).splits["val"]
    assert len(items) == 10 and all(Path(it.mask).is_file() for it in items)


@pytest.fixture(scope="module")
def seg_store(tmp_path_factory) -> Path:
    """Fashion-MNIST with garment masks: 30 train + 20 val images per class... fewer: 20 and 10."""
    root = tmp_path_factory.mktemp("seg")
    manifest = write_fmnist_masks(root / "data", per_class_train=20, per_class_val=10)
    out = root / "seg.zarr"
    diffprobe.extract_features(extract_config(manifest, out, timesteps=(90,), blocks=(12,), pools=(None,), unit_size=64), progress=False)
    return out


def test_masks_are_stored_item_aligned_and_are_not_feature_keys(seg_store):
    with diffprobe.open_store(seg_store) as s:
        m = s.masks("val")
        assert m.shape == (100, 32, 32) and m.dtype == np.uint8 and s.keys("val") == ["t0090_b12_full"]
        assert s.attrs["mask_classes"][0] == "background" and len(s.attrs["mask_classes"]) == 11
        label = s.labels("val")
        for i in (0, 55, 99):  # every garment pixel carries its image's class + 1, the background 0
            assert set(np.unique(m[i])) == {0, label[i] + 1}


def test_metrics_on_a_known_confusion():
    truth = torch.tensor([[[0, 0, 1, 1], [2, 2, 255, 255]]])
    pred = torch.tensor([[[0, 1, 1, 1], [2, 0, 2, 0]]])
    conf = confusion(pred, truth, 3, 255)
    assert conf.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    m = segmentation_metrics(conf, ["bg", "a", "b"])
    assert m["iou"] == {"bg": pytest.approx(1 / 3), "a": pytest.approx(2 / 3), "b": pytest.approx(1 / 2)}
    assert m["miou"] == pytest.approx((1 / 3 + 2 / 3 + 1 / 2) / 3) and m["pixel_accuracy"] == pytest.approx(4 / 6) and m["pixels"] == 6


def test_batches_stream_every_row_once_in_bounded_windows(seg_store):
    with diffprobe.open_store(seg_store) as s:
        src = DenseSource.of(s, "train", ["t0090_b12_full"])
        small = src.row_bytes() * 64  # windows of 64 rows
        seen, masks = [], s.masks("train")
        for maps, m in src.batches(16, np.random.default_rng(0), max_memory=small):
            assert maps[0].shape[1:] == (128, 8, 8) and len(m) <= 16
            seen += [int(np.flatnonzero((masks == m[i].numpy().astype(np.uint8)).all(axis=(1, 2)))[0]) for i in range(len(m))]
    assert sorted(seen) == list(range(200)) and seen != list(range(200))


def test_diffusion_features_segment_garments_far_better_than_pixels(seg_store, tmp_path):
    runs = {}
    for name, extra in (("features", ["--blocks", "12"]), ("pixels", ["--pixels"])):
        out = tmp_path / f"{name}.json"
        r = CliRunner().invoke(main, ["probe", "dense", str(seg_store), *extra, "--epochs", "15", "--out", str(out)])
        assert r.exit_code == 0, r.output
        assert "mIoU" in r.output and "IoU per class" in r.output
        runs[name] = json.loads(out.read_text())
    f, p = runs["features"]["metrics"], runs["pixels"]["metrics"]
    # the masks' class names come from mask_classes.txt beside the manifest, through the store
    assert list(f["iou"])[:2] == ["background", "0_tshirt_top"] and "0_tshirt_top" in r.output
    assert runs["features"]["n_classes"] == 11 and f["pixels"] == 100 * 32 * 32
    # 100 val images × 1,024 pixels: a point of mIoU is many pixels; the measured gap is ~40 points
    assert f["miou"] > p["miou"] + 0.2 and f["pixel_accuracy"] > p["pixel_accuracy"]


def test_the_mlp_ensemble_trains_and_the_grid_shows_items(seg_store, tmp_path):
    out, grid = tmp_path / "mlp.json", tmp_path / "grid.png"
    r = CliRunner().invoke(main, ["probe", "dense", str(seg_store), "--head", "mlp", "--members", "2", "--epochs", "3",
                                  "--out", str(out), "--grid", str(grid)])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "dense mlp ×2 probe on t0090_b12_full" in r.output and f"wrote {grid}" in r.output
    res = json.loads(out.read_text())
    assert (res["probe"], res["task"], res["metric"], res["config"]["params"]["head"], res["config"]["params"]["members"]) == ("dense", "dense", "miou", "mlp", 2)
    assert len(res["losses"]) == 3 and res["losses"][-1] < res["losses"][0] and res["score"] == res["metrics"]["miou"]
    assert res["metrics"]["miou"] > 0.2  # far above the pixel baseline's ~0.1 even after 3 epochs
    with Image.open(grid) as im:
        assert im.size == (600, 1600)  # 8 items × (image, truth, prediction)
    r = CliRunner().invoke(main, ["probe", "dense", str(seg_store), "--grid", str(grid), "--epochs", "1"])
    assert r.exit_code != 0 and "already exists" in r.output  # outputs are never replaced silently


def test_a_dense_sweep_writes_the_table_best_key_and_miou_plots(seg_store, tmp_path):
    out = tmp_path / "sweep"
    r = CliRunner().invoke(main, ["probe", "dense", str(seg_store), "--sweep", str(out), "--epochs", "2"])
    assert r.exit_code == 0, r.output
    assert "t0090_b12_full" in r.output and "raw pixels" in r.output and "best: t0090_b12_full" in r.output
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert [(r["key"], r["t"], r["block"], r["pool"], r["task"], r["metric"]) for r in rows] == [
        ("t0090_b12_full", "90", "12", "full", "dense", "miou"), ("pixels", "", "", "", "dense", "miou")]
    assert rows[0]["score"] == rows[0]["miou"] and rows[0]["top1"] == ""  # mIoU under its own name, never under top1
    best = json.loads((out / "best.json").read_text())
    assert best["overall"]["key"] == "t0090_b12_full" and 0 < best["baseline"]["score"] < best["overall"]["score"]
    assert (out / "acc_vs_block.png").stat().st_size > 0 and not (out / "acc_vs_t.png").exists()  # one key: one bar chart


def test_upernet_fuses_maps_of_several_resolutions_and_learns(seg_store):
    from diffprobe.probes.dense.heads import UperNetHead

    torch.manual_seed(0)
    head = UperNetHead([64, 16, 32], 5, 0, width=16)
    maps = [torch.randn(2, 64, 4, 4), torch.randn(2, 16, 16, 16), torch.randn(2, 32, 8, 8)]  # in any order of resolution
    assert head(maps, 32).shape == (2, 5, 32, 32)
    r = CliRunner().invoke(main, ["probe", "dense", str(seg_store), "--head", "upernet", "--epochs", "3"])
    assert r.exit_code == 0 and "dense upernet probe on t0090_b12_full" in r.output, r.output
    miou = float(r.output.split("mIoU ")[1].split("%")[0])
    assert miou > 20  # the pixel baseline is ~10


def test_the_optimiser_and_schedule_are_options(seg_store):
    from diffprobe.probes.dense.heads import LinearDenseHead
    from diffprobe.probes.dense.train import fit_head
    from diffprobe.probes.errors import ProbeError
    from diffprobe.probes.optim import TrainConfig

    with diffprobe.open_store(seg_store) as s:
        src = DenseSource.of(s, "train", ["t0090_b12_full"])
        for opt, sched in (("sgd", "poly"), ("adamw", "constant")):
            losses = fit_head(LinearDenseHead([128], 11, 8), src, TrainConfig(epochs=3, optimizer=opt, schedule=sched, momentum=0.9, weight_decay=1e-4, batch_size=32))
            assert losses[-1] < losses[0], (opt, sched, losses)
        with pytest.raises(ProbeError, match="unknown optimizer .adam.; valid: sgd, adamw .did you mean .adamw."):
            TrainConfig(epochs=1, optimizer="adam")


def test_dense_probe_is_an_estimator_on_arrays_too(seg_store):
    from sklearn.base import clone

    from diffprobe.probes.dense.estimator import DenseProbe

    with diffprobe.open_store(seg_store) as s:
        X, y = s.read("train", 90, 12, None), s.masks("train")
        Xv, yv = s.read("val", 90, 12, None), s.masks("val")
    est = DenseProbe(epochs=5, max_memory=1 << 20)  # windows of ~60 items: streamed, as from a store
    assert clone(est).get_params()["epochs"] == 5
    est.fit(X, y)
    pred = est.predict(Xv)
    assert pred.shape == (100, 32, 32) and est.n_classes_ == 11 and est.losses_[-1] < est.losses_[0]
    assert est.score(Xv, yv) > 0.2
    with pytest.raises(Exception, match=r"expected maps of shape \(N=200"):
        DenseProbe().fit(X[:10], y)
