"""Contract tests shared by the Zarr and HDF5 backends."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

import diffprobe
from diffprobe.errors import StoreError, StoreKeyError
from diffprobe.store import FeatureKey
from diffprobe.store.inspect import store_info, verify_store
from diffprobe.store.maintenance import export_store
from tests.helpers import read_all


@pytest.fixture(params=["zarr", "hdf5"])
def store_path(request, small_store, tmp_path):
    """A private copy of the session store in each format (tests may modify it)."""
    if request.param == "zarr":
        return shutil.copytree(small_store, tmp_path / "copy.zarr")
    return export_store(small_store, tmp_path / "copy.h5")


def test_read_api(store_path):
    with diffprobe.open_store(store_path) as s:
        assert s.splits == ["train", "val"]
        assert s.feature_keys("val") == [FeatureKey(t, b, p) for t in (50, 150) for b in (10, 13) for p in (1, 2)]
        assert s.keys("val")[0] == "t0050_b10_p1"
        x = s.read("val", 150, 13, 2)
        assert x.shape == (50, 128, 2, 2) and x.dtype == np.float16
        assert np.array_equal(s.read("val", "t0150_b13_p2"), x)
        assert np.array_equal(s.read("val", FeatureKey(150, 13, 2)), x)
        lazy = s.read("val", 150, 13, 2, lazy=True)
        assert np.array_equal(lazy.compute(), x)
        assert np.array_equal(s.read("val", 150, 13, 2, items=np.array([7, 3, 3])), x[[7, 3, 3]])
        assert np.array_equal(s.read("val", 150, 13, 2, items=slice(5, 9)), x[5:9])
        labels, ids = s.labels("val"), s.ids("val")
        assert labels.dtype == np.int64 and sorted(set(labels)) == list(range(10))
        assert list(ids) == sorted(ids) and "/0_tshirt_top/" in ids[0]
        assert s.valid("val").all() and len(s.paths("val")) == 50
        assert s.class_names[9] == "9_ankle_boot"
        assert s.config["model"] == "adm-32-fmnist" and s.config["timesteps"] == [50, 150]
        assert len(s.config_hash) == 16 and s.attrs["checkpoint_sha256"]
        assert s.attrs["schema_version"] == 1 and s.attrs["package_version"] == diffprobe.__version__
        assert s.is_complete()


def test_clear_errors(store_path):
    with diffprobe.open_store(store_path) as s:
        with pytest.raises(StoreKeyError, match="no split 'test'.*splits: train, val"):
            s.read("test", 50, 10, 1)
        with pytest.raises(KeyError, match="no array 't0090_b10_p1'.*arrays: t0050_b10_p1"):
            s.read("val", 90, 10, 1)
        with pytest.raises(StoreError, match="read-only"):
            s.write_array("val", "x", np.zeros((50, 3)))


def test_write_array_for_imports(store_path, tmp_path):
    with diffprobe.open_store(store_path, mode="a") as s:
        s.write_array("val", "mae_layer6", np.arange(50 * 3, dtype=np.float32).reshape(50, 3), attrs={"source": "x.npy"})
        with pytest.raises(StoreError, match="already has an array"):
            s.write_array("val", "mae_layer6", np.zeros((50, 3), np.float32))
        with pytest.raises(StoreError, match="must have 50 rows"):
            s.write_array("val", "other", np.zeros((49, 3), np.float32))
        with pytest.raises(StoreError, match="invalid array name"):
            s.write_array("val", "t0090_b24_p2", np.zeros((50, 3), np.float32))
    with diffprobe.open_store(store_path) as s:
        assert "mae_layer6" in s.keys("val") and s.read("val", "mae_layer6")[1, 0] == 3
        assert s.completeness("val")["mae_layer6"] == (2, 2)
        assert FeatureKey(50, 10, 1) in s.feature_keys("val")


def test_info_and_verify(store_path):
    with diffprobe.open_store(store_path) as s:
        info = store_info(s)
        assert info["complete"] and info["splits"]["val"]["arrays"]["t0050_b13_p2"]["shape"] == [50, 128, 2, 2]
        assert info["splits"]["train"]["items"] == 100 and info["bytes_on_disk"] > 0
        assert verify_store(s).ok


def test_export_round_trip_is_identical(small_store, tmp_path):
    h5 = export_store(small_store, tmp_path / "a.h5")
    back = export_store(h5, tmp_path / "b.zarr")
    a, b = read_all(small_store), read_all(back)
    assert a.keys() == b.keys()
    for k in a:
        assert np.array_equal(a[k], b[k], equal_nan=True)
    with diffprobe.open_store(back) as s, diffprobe.open_store(small_store) as s0:
        assert list(s.ids("val")) == list(s0.ids("val")) and s.config_hash == s0.config_hash
        assert s.markers("val").keys() == s0.markers("val").keys()
    with pytest.raises(StoreError, match="exists"):
        export_store(small_store, h5)


def test_open_errors(tmp_path):
    with pytest.raises(StoreError, match="no store at"):
        diffprobe.open_store(tmp_path / "none.zarr")
    (tmp_path / "junk.h5").write_text("not hdf5")
    with pytest.raises(StoreError, match="cannot open"):
        diffprobe.open_store(tmp_path / "junk.h5")
    (tmp_path / "dir.zarr").mkdir()
    with pytest.raises(StoreError, match="no store at"):
        diffprobe.open_store(tmp_path / "dir.zarr")


def test_xarray_reads_a_split_directly(small_store):
    """Named dimensions: a split opens as an xarray Dataset without any diffprobe code."""
    xr = pytest.importorskip("xarray")
    ds = xr.open_zarr(small_store, group="val", consolidated=False)
    with diffprobe.open_store(small_store) as s:
        assert ds["t0150_b13_p2"].dims == ("item", "c128", "h2_2", "w2_2")
        assert np.array_equal(ds["t0150_b13_p2"].values, s.read("val", 150, 13, 2))
        assert list(ds["label"].values) == list(s.labels("val"))
