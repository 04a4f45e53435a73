"""Augmented views in the cache: view 0 is today's bytes, views re-create from their recorded
parameters, every path (resume, shards, dask, HDF5) writes the same bytes, identity and cost."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

import diffprobe
from diffprobe.cli import main
from diffprobe.errors import StoreError
from diffprobe.extract.masks import load_mask, open_mask
from diffprobe.extract.sources.decode import decode_image
from diffprobe.extract.sources.fmnist_masks import write_fmnist_masks
from diffprobe.extract.views import ViewSpec, to_array
from diffprobe.pipelines.extraction.repair import repair_store
from diffprobe.store.integrity import deep_verify
from tests.helpers import extract_config

KW = dict(splits=("val",), timesteps=(150,), blocks=(10,), pools=(1, 2), unit_size=16)


def _extract(manifest: Path, out: Path, **kw) -> diffprobe.ExtractSummary:
    return diffprobe.extract_features(extract_config(manifest, out, **{**KW, **kw}), progress=False)


def _arrays(path: Path) -> dict[str, bytes]:
    with diffprobe.open_store(path) as s:
        return {k: s.read("val", k).tobytes() for k in s.keys("val")}


@pytest.fixture(scope="module")
def views_store(tmp_path_factory, small_manifest) -> Path:
    """The val split (50 images) with 4 views × 2 kept draws."""
    out = tmp_path_factory.mktemp("views") / "v4.zarr"
    _extract(small_manifest, out, views=4, draws=2, reduce="none")
    return out


def test_view_zero_equals_single_view_bytes(small_manifest, views_store, tmp_path):
    one = tmp_path / "v1.zarr"
    _extract(small_manifest, one, draws=2, reduce="none")
    with diffprobe.open_store(one) as a, diffprobe.open_store(views_store) as b:
        assert a.views == 1 and b.views == 4
        for k in a.keys("val"):
            x, y = a.read("val", k), b.read("val", k)
            assert x.shape == (50, 2, 128, *x.shape[-2:]) and y.shape == (50, 4, *x.shape[1:])
            assert y[:, 0].tobytes() == x.tobytes(), k  # byte for byte
            assert not np.array_equal(y[:, 1], y[:, 0])  # augmented views differ
        assert "views" not in a.attrs["identity"]  # a store without views keeps its identity
        assert b.attrs["identity"]["views"] == 4 and b.attrs["identity"]["augment"] == "paper"


def test_a_view_recreated_from_its_recorded_parameters_equals_the_stored_features(views_store, fmnist_backbone):
    """pool(features(q_sample(aug(image, recorded params), t, noise(seed, id, t, draw, view)))), in float16."""
    with diffprobe.open_store(views_store) as s:
        how, params = s.view_params("val")
        assert how == {"augment": "paper", "fields": ("short_side", "x", "y", "flip"), "size": 32, "seed": 0}
        assert params.shape == (50, 4, 4) and np.isnan(params[:, 0]).all()
        aug = diffprobe.extract.augment.get_augmentation(how["augment"])
        ids, paths, stored = s.ids("val"), s.paths("val"), s.read("val", 150, 10, 2)
        for view in (1, 3):
            rows = [0, 7, 31]
            x0 = torch.from_numpy(np.stack([to_array(aug.apply(decode_image(paths[i]), params[i, view], 32)) for i in rows]))
            for draw in (0, 1):
                eps = diffprobe.noise_like(x0, [ids[i] for i in rows], 150, seed=0, draw=draw, view=view)
                x_t = diffprobe.q_sample(x0, 150, eps, fmnist_backbone.schedule)
                with torch.inference_mode():
                    f = fmnist_backbone.features(x_t, 150, [10])[10]
                expect = F.adaptive_avg_pool2d(f, 2).half().numpy()
                assert np.array_equal(stored[rows, view, draw], expect), (view, draw)


@pytest.mark.slow  # dask and shards: test_distributed.py (slow too); the default run has test_extract's dask test
def test_resume_shards_dask_and_hdf5_write_the_same_bytes(small_manifest, tmp_path):
    kw = dict(views=3, augment="rrc", pools=(2,))
    _extract(small_manifest, tmp_path / "ref.zarr", **kw)
    ref = _arrays(tmp_path / "ref.zarr")
    for i in range(2):  # static shards, then finalize
        _extract(small_manifest, tmp_path / "sharded.zarr", shard=(i, 2), **kw)
    assert _arrays(tmp_path / "sharded.zarr") == ref
    part = shutil.copytree(tmp_path / "sharded.zarr", tmp_path / "resumed.zarr")  # lose units 1 and 2: resume
    for u in (1, 2):
        (part / "_progress" / "val" / f"unit-{u:06d}.json").unlink()
    s = _extract(small_manifest, part, **kw)
    assert s.units_run == 2 and _arrays(part) == ref
    _extract(small_manifest, tmp_path / "dask.zarr", workers=2, **kw)
    assert _arrays(tmp_path / "dask.zarr") == ref
    _extract(small_manifest, tmp_path / "v.h5", **kw)
    assert _arrays(tmp_path / "v.h5") == ref
    with diffprobe.open_store(tmp_path / "v.h5") as h, diffprobe.open_store(tmp_path / "ref.zarr") as z:
        assert h.views == 3 and np.array_equal(h.view_params("val")[1], z.view_params("val")[1], equal_nan=True)


def test_the_identity_includes_views_and_augmentation(small_manifest, views_store, tmp_path):
    out = shutil.copytree(views_store, tmp_path / "v.zarr")
    before = _arrays(out)
    for other in (dict(views=2), dict(views=4, augment="rrc"), dict(views=1)):
        with pytest.raises(StoreError, match="views|augment"):
            _extract(small_manifest, out, **{"draws": 2, "reduce": "none", "views": 4, **other})
    assert _arrays(out) == before  # refused before anything was written


def test_dry_run_says_the_cost_of_views(small_manifest, tmp_path):
    def dry(*extra: str) -> str:
        args = ["extract", str(small_manifest), "-m", "adm-32-fmnist", "--t", "150", "--blocks", "10", "--pool", "2",
                "--splits", "val", "-o", str(tmp_path / "d.zarr"), "--dry-run", *extra]  # fmt: skip
        r = CliRunner().invoke(main, args)
        assert r.exit_code == 0, r.output
        return r.output

    one, eight = dry(), dry("--views", "8", "--augment", "rrc", "--draws", "2")
    assert "cost: 1 model passes per image" in one and "50 in all" in one
    assert "views: 8 (view 0 the centre crop, 1..7 'rrc'): 8× the model forwards and bytes" in eight
    assert "cost: 16 model passes per image (views × timesteps × draws), 800 in all" in eight
    assert "array t0150_b10_p2 [8, 128, 2, 2]" in eight
    size = [line for line in eight.splitlines() if "estimated size" in line]
    assert size and "400.0 KiB" in size[0]  # 50 images × 8 views × 128 × 2 × 2 values × 2 bytes
    assert not (tmp_path / "d.zarr").exists()
    assert json.loads(one[: one.index("\n}") + 2])["views"] == 1


def test_masks_are_stored_per_view_through_the_views_geometry_and_repaired(tmp_path):
    manifest = write_fmnist_masks(tmp_path / "data", per_class_train=1, per_class_val=1)
    out = tmp_path / "seg.zarr"
    diffprobe.extract_features(extract_config(manifest, out, splits=("val",), timesteps=(150,), blocks=(10,), pools=(1,),
                                              views=3, augment="rrc"), progress=False)  # fmt: skip
    with diffprobe.open_store(out) as s:
        m, ids = s.masks("val"), s.ids("val")
        assert m.shape == (10, 3, 32, 32) and m.dtype == np.uint8
        vs = ViewSpec.of_store(s, "val")
        assert vs == ViewSpec(3, "rrc", 0, 32)
        rows = {r["id"]: r["mask"] for r in _rows(manifest)}
        for i in (0, 9):
            path = manifest.parent / rows[ids[i]]
            assert np.array_equal(m[i, 0], load_mask(path, 32))  # view 0: the evaluation geometry
            assert np.array_equal(m[i], vs.masks(open_mask(path), ids[i]))
        assert not np.array_equal(m[:, 1], m[:, 0])
        before = {name: s.backend.read_rows("val", name, None) for name in ("mask", "view_params")}
    # Damaged side arrays are found by the deep check and made again by repair: masks from the data,
    # view parameters from the seed — byte for byte what was written.
    with diffprobe.open_store(out, mode="a") as s:
        s.backend.write_rows("val", "mask", 3, np.zeros((1, 3, 32, 32), np.uint8))
        s.backend.write_rows("val", "view_params", 5, np.ones((1, 3, 5)))
        found = deep_verify(s)
    assert sorted(d.array for d in found.damage) == ["mask", "view_params"]
    rep = repair_store(out, progress=False)
    assert rep.ok and sorted(rep.rewrote_side) == ["val/mask", "val/view_params"], rep.lines()
    with diffprobe.open_store(out) as s:
        for name, values in before.items():
            assert np.array_equal(s.backend.read_rows("val", name, None), values, equal_nan=True), name


def _rows(manifest: Path) -> list[dict[str, str]]:
    import csv

    with open(manifest, newline="") as f:
        return list(csv.DictReader(f))
