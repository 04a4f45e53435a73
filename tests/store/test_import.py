"""`store import` / import_array: foreign arrays aligned by item id, and every error before any write."""

from __future__ import annotations

import shutil

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

import diffprobe
from diffprobe.cli import main
from diffprobe.errors import ConfigError, StoreError, StoreKeyError
from diffprobe.store.importing import import_array


@pytest.fixture
def store(small_store, tmp_path):
    return shutil.copytree(small_store, tmp_path / "s.zarr")


@pytest.fixture
def ids(small_store) -> list[str]:
    with diffprobe.open_store(small_store) as s:
        return [str(i) for i in s.ids("val")]


def write_ids(path, ids) -> str:
    path.write_text("\n".join(ids) + "\n")
    return str(path)


def test_import_npy_in_store_order(store, tmp_path):
    data = np.random.default_rng(0).normal(size=(50, 8, 2)).astype(np.float64)
    np.save(tmp_path / "f.npy", data)
    rep = import_array(store, tmp_path / "f.npy", name="resnet_l3", split="val")
    assert rep.shape == (50, 8, 2) and rep.dtype == "float32" and rep.n_missing == 0
    with diffprobe.open_store(store) as s:
        assert "resnet_l3" in s.keys("val") and "resnet_l3" not in [str(k) for k in s.feature_keys("val")]
        np.testing.assert_array_equal(s.read("val", "resnet_l3"), data.astype(np.float32))


def test_import_h5_aligned_by_ids(store, tmp_path, ids):
    rng = np.random.default_rng(1)
    data = rng.normal(size=(50, 6)).astype(np.float16)
    order = rng.permutation(50)
    with h5py.File(tmp_path / "f.h5", "w") as f:
        f["feats/layer6"] = data[order]
        f["other"] = np.zeros(3)
    with pytest.raises(ConfigError, match="expected --dataset.*valid: feats/layer6, other"):
        import_array(store, tmp_path / "f.h5", name="mae6", split="val")
    idf = write_ids(tmp_path / "ids.txt", [ids[i] for i in order])
    import_array(store, tmp_path / "f.h5", name="mae6", split="val", ids=idf, dataset="feats/layer6")
    with diffprobe.open_store(store) as s:
        got = s.read("val", "mae6")
    assert got.dtype == np.float16
    np.testing.assert_array_equal(got, data)  # back in the store's item order


def test_partial_ids_leave_nan_rows(store, tmp_path, ids):
    np.save(tmp_path / "f.npy", np.ones((45, 3), np.float32))
    rep = import_array(store, tmp_path / "f.npy", name="part", split="val", ids=write_ids(tmp_path / "i.txt", ids[5:]))
    assert rep.n_missing == 5
    with diffprobe.open_store(store) as s:
        got = s.read("val", "part")
    assert np.isnan(got[:5]).all() and (got[5:] == 1).all()


def test_errors_leave_the_store_untouched(store, tmp_path, ids):
    np.save(tmp_path / "short.npy", np.zeros((49, 3), np.float32))
    np.save(tmp_path / "ok.npy", np.zeros((50, 3), np.float32))
    with pytest.raises(StoreError, match="short.npy has 49 rows, the split 50 items; pass --ids FILE"):
        import_array(store, tmp_path / "short.npy", name="x", split="val")
    with pytest.raises(StoreError, match="the source has 50 rows, the file 49 ids"):
        import_array(store, tmp_path / "ok.npy", name="x", split="val", ids=write_ids(tmp_path / "a.txt", ids[:49]))
    with pytest.raises(StoreKeyError, match="2 of 50 ids in .* are not items of the split"):
        import_array(store, tmp_path / "ok.npy", name="x", split="val", ids=write_ids(tmp_path / "b.txt", ids[:48] + ["nope1", "nope2"]))
    with pytest.raises(StoreError, match="repeats 1 ids"):
        import_array(store, tmp_path / "ok.npy", name="x", split="val", ids=write_ids(tmp_path / "c.txt", ids[:49] + ids[:1]))
    with pytest.raises(StoreKeyError, match="valid: train, val"):
        import_array(store, tmp_path / "ok.npy", name="x", split="test")
    with pytest.raises(ConfigError, match="not a feature key"):
        import_array(store, tmp_path / "ok.npy", name="t0090_b24_p2", split="val")
    with pytest.raises(ConfigError, match="got 'a b'"):
        import_array(store, tmp_path / "ok.npy", name="a b", split="val")
    with pytest.raises(ConfigError, match="ending in .npy, .h5, .hdf5"):
        import_array(store, tmp_path / "a.txt", name="x", split="val")
    with diffprobe.open_store(store) as s:
        assert "x" not in s.keys("val")


def test_existing_name_needs_overwrite(store, tmp_path):
    np.save(tmp_path / "a.npy", np.zeros((50, 2), np.float32))
    np.save(tmp_path / "b.npy", np.ones((50, 2), np.float32))
    import_array(store, tmp_path / "a.npy", name="feat", split="val")
    with pytest.raises(StoreError, match="'feat' already exists in split 'val'; choose another --name or pass --overwrite"):
        import_array(store, tmp_path / "b.npy", name="feat", split="val")
    import_array(store, tmp_path / "b.npy", name="feat", split="val", overwrite=True)
    with diffprobe.open_store(store) as s:
        assert (s.read("val", "feat") == 1).all()


def test_cli_import_and_clean_errors(store, tmp_path):
    np.save(tmp_path / "f.npy", np.zeros((50, 4), np.float32))
    r = CliRunner().invoke(main, ["store", "import", str(tmp_path / "f.npy"), "--into", str(store), "--name", "f", "--split", "val"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["store", "import", str(tmp_path / "f.npy"), "--into", str(store), "--name", "f", "--split", "val"])
    assert r.exit_code != 0 and "already exists" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(main, ["store", "import", str(tmp_path / "f.npy"), "--into", str(store), "--name", "g"])
    assert r.exit_code != 0 and "expected --split" in r.output


def test_an_imported_vector_array_is_probed_as_a_1x1_map(store, tmp_path):
    """An (N, D) import (e.g. a ViT's class tokens) reads as (N, D, 1, 1): `probe … --key NAME` works on it."""
    with diffprobe.open_store(store) as s:
        y = {sp: s.labels(sp) for sp in ("train", "val")}
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        feats = rng.normal(size=(len(y[split]), 6)).astype(np.float32) + 3.0 * np.eye(10, 6)[y[split]]  # separable by class
        np.save(tmp_path / f"{split}.npy", feats)
        r = CliRunner().invoke(main, ["store", "import", str(tmp_path / f"{split}.npy"), "--into", str(store), "--name", "vit_cls",
                                      "--split", split])  # fmt: skip
        assert r.exit_code == 0, r.output
    with diffprobe.open_store(store) as s:
        lay = s.layout("val", "vit_cls")
        assert lay.flat and lay.map_shape == (6, 1, 1) and lay.item_shape == (6,)
    r = CliRunner().invoke(main, ["-q", "probe", "logistic", str(store), "--key", "vit_cls", "--json"])
    assert r.exit_code == 0, r.output
    import json

    res = json.loads(r.output)
    assert res["keys"] == [{"key": "vit_cls", "t": None, "block": None, "pool": None}] and res["score"] > 0.5
