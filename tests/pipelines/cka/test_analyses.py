"""CKA analyses on a real store (the session's small Fashion-MNIST store): selection, matching, outputs."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import diffprobe
from diffprobe.errors import StoreError, StoreKeyError
from diffprobe.pipelines.cka.analyses import cka_blocks, cka_stores, cka_timesteps, match_items
from diffprobe.pipelines.cka.config import CKAConfig
from diffprobe.pipelines.cka.math import cka
from diffprobe.pipelines.cka.outputs import write_outputs


class Reordered:
    """A read-only view of a store with its items permuted and, optionally, some ids renamed."""

    def __init__(self, store, perm: np.ndarray, renamed: int = 0) -> None:
        self.s, self.perm, self.renamed = store, perm, renamed
        self.splits, self.config_hash, self.path = store.splits, "view", "<view>"

    def keys(self, split):
        return self.s.keys(split)

    def feature_keys(self, split):
        return self.s.feature_keys(split)

    def ids(self, split):
        ids = self.s.ids(split)[self.perm].astype(object)
        ids[: self.renamed] = [f"other/{i}.png" for i in range(self.renamed)]
        return ids

    def valid(self, split):
        return self.s.valid(split)[self.perm]

    def read(self, split, name, lazy=False):
        return self.s.read(split, name)[self.perm]

    def layout(self, split, name):
        return self.s.layout(split, name)


def direct(store, split, names):
    with diffprobe.open_store(store) as s:
        ok = s.valid(split)
        arrays = [s.read(split, n)[ok] for n in names]
    return np.array([[cka(a, b) for b in arrays] for a in arrays])


def test_blocks_matrix_equals_direct_computation(small_store):
    r = cka_blocks(small_store, split="val", t=150, pool=2)
    assert r.matrix.row_labels == r.matrix.col_labels == ["10", "13"] and r.matrix.n_items == 50
    np.testing.assert_allclose(r.values, direct(small_store, "val", ["t0150_b10_p2", "t0150_b13_p2"]), atol=1e-10)
    assert r.selection == {"split": "val", "t": 150, "pool": 2, "blocks": [10, 13]}
    with diffprobe.open_store(small_store) as s:
        assert r.stores[0]["config_hash"] == s.config_hash
    one_block = cka_blocks(small_store, split="val", t=150, pool=1, blocks=[13, 10])
    assert one_block.matrix.row_labels == ["10", "13"]


def test_timesteps_matrix_with_streaming_and_unbiased(small_store):
    cfg = CKAConfig(estimator="unbiased", method="features", chunk_rows=16)
    r = cka_timesteps(small_store, split="train", block=13, pool=1, config=cfg)
    assert r.matrix.row_labels == ["50", "150"] and r.matrix.n_items == 100 and r.matrix.facts["passes"] == 1
    with diffprobe.open_store(small_store) as s:
        a, b = s.read("train", 50, 13, 1), s.read("train", 150, 13, 1)
    assert r.values[0, 1] == pytest.approx(cka(a, b, estimator="unbiased"), abs=1e-10)


def test_selection_errors_list_what_is_there(small_store):
    with pytest.raises(StoreKeyError, match="expected --split.*valid: train, val"):
        cka_blocks(small_store, t=150)
    with pytest.raises(StoreKeyError, match=r"expected a t \(the store has several: 50, 150\); pass --t"):
        cka_blocks(small_store, split="val")
    with pytest.raises(StoreKeyError, match=r"block 24 does not exist: this model has blocks 1..19 .*stored blocks: 10 \(.*\), 13 \("):
        cka_blocks(small_store, split="val", t=150, blocks=[10, 24])
    with pytest.raises(StoreKeyError, match=r"unknown pool 4 in split 'val'; valid: .*pool ∈ \{1, 2\}"):
        cka_blocks(small_store, split="val", t=150, pool=4)
    with pytest.raises(StoreKeyError, match=r"unknown pool full in split 'val'; valid: .*pool ∈ \{1, 2\}"):
        cka_timesteps(small_store, split="val", block=13, pool=None)
    with pytest.raises(StoreKeyError, match=r"unknown t 90 in split 'val'; valid: t ∈ \{50, 150\}"):
        cka_blocks(small_store, split="val", t=90)
    with pytest.raises(StoreKeyError, match=r"expected a block \(the store has several: 10, 13\); pass --blocks"):
        cka_timesteps(small_store, split="val")
    with pytest.raises(StoreKeyError, match="at least 2 blocks"):
        cka_blocks(small_store, split="val", t=150, blocks=[10])


def test_stores_match_items_by_id(small_store):
    cfg = CKAConfig(method="features", chunk_rows=7)
    with diffprobe.open_store(small_store) as s:
        same = cka_stores(s, s, split="val", keys_a=["t0150_*_p1"], keys_b=["t0050_b13_p2", "t0150_b10_p2"], config=cfg)
        perm = np.random.default_rng(0).permutation(50)
        shuffled = cka_stores(s, Reordered(s, perm), split="val", keys_a=["t0150_*_p1"], keys_b=["t0050_b13_p2", "t0150_b10_p2"], config=cfg)
        with pytest.raises(StoreError, match="got 3 ids of A .50 items. missing from B and 3 ids of B .50 items. missing from A"):
            cka_stores(s, Reordered(s, perm, renamed=3), split="val")
        with pytest.raises(StoreKeyError, match=r"unknown key 'mae\*' in split 'val'; valid: t0050_b10_p1"):
            cka_stores(s, s, split="val", keys_a=["mae*"])
    # rows share t and pool: labelled by block, on an axis that says so; columns differ in t: by name
    assert same.matrix.row_labels == ["10", "13"] and same.row_axis == "store A: adm-32-fmnist block (t = 150, pool 1)"
    assert same.matrix.col_labels == ["t0050_b13_p2", "t0150_b10_p2"] and same.col_axis == "store B"
    assert shuffled.selection["reordered_b"] and not same.selection["reordered_b"]
    np.testing.assert_allclose(shuffled.values, same.values, rtol=0, atol=1e-10)
    # by position, a shuffled copy is another pairing (and the check is the caller's); the same order gives the same matrix
    by_pos = cka_stores(small_store, small_store, split="val", keys_a=["t0150_*_p1"], keys_b=["t0050_b13_p2", "t0150_b10_p2"],
                        pair_by="position", config=cfg)  # fmt: skip
    np.testing.assert_allclose(by_pos.values, same.values, rtol=0, atol=1e-12)
    with diffprobe.open_store(small_store) as s:
        with pytest.raises(StoreError, match="needs as many items in both stores, got 50 in A and 49 in B"):
            cka_stores(s, Reordered(s, np.arange(49)), split="val", pair_by="position")
    a = direct(small_store, "val", ["t0150_b10_p1", "t0150_b10_p2"])
    assert same.values[0, 1] == pytest.approx(a[0, 1], abs=1e-10)


def test_match_items_messages():
    assert match_items(["a", "b", "c"], ["c", "a", "b"]).tolist() == [1, 2, 0]
    with pytest.raises(StoreError, match="store B repeats 1 item ids"):
        match_items(["a", "b"], ["a", "a"])


def test_partial_import_rows_are_excluded(small_store, tmp_path):
    from diffprobe.store.importing import import_array

    path = shutil.copytree(small_store, tmp_path / "s.zarr")
    with diffprobe.open_store(path) as s:
        ids, feats = s.ids("val"), s.read("val", "t0150_b13_p1").reshape(50, -1).astype(np.float32)
    np.save(tmp_path / "other.npy", feats[:40] ** 2)
    (tmp_path / "ids.txt").write_text("\n".join(ids[:40]) + "\n")
    import_array(path, tmp_path / "other.npy", name="other", split="val", ids=tmp_path / "ids.txt")
    r = cka_stores(path, path, split="val", keys_a=["other"], keys_b=["t0150_b13_p1"])
    assert r.matrix.n_items == 40 and r.matrix.facts["n_excluded"] == 10
    assert r.values[0, 0] == pytest.approx(cka(feats[:40] ** 2, feats[:40]), abs=1e-6)  # float16 storage of b13


def test_outputs_csv_json_png(small_store, tmp_path):
    r = cka_blocks(small_store, split="val", t=50, pool=1)
    paths = write_outputs(r, tmp_path / "out")
    rows = [line.split(",") for line in paths["csv"].read_text().splitlines()]
    assert rows[0] == ["block", "10", "13"] and [row[0] for row in rows[1:]] == ["10", "13"]
    assert float(rows[1][1]) == pytest.approx(1.0) and float(rows[1][2]) == pytest.approx(r.values[0, 1], abs=1e-11)
    meta = json.loads(paths["json"].read_text())
    assert meta["analysis"] == "blocks" and meta["config"]["kernel"] == "linear" and meta["n_items"] == 50
    assert meta["stores"][0]["config_hash"] and meta["run"]["method"] in ("features", "gram")
    import matplotlib.image

    img = matplotlib.image.imread(paths["png"])
    assert img.ndim == 3 and img.shape[0] > 200 and img.shape[1] > 200


def test_blocks_heatmap_of_one_timestep(small_store, tmp_path):
    """The demo's figure: every stored block at one t and pool, written as CSV, JSON and PNG."""
    png = write_outputs(cka_blocks(small_store, split="val", t=150, pool=2), tmp_path / "demo")["png"]
    assert png == tmp_path / "demo" / "cka.png" and png.stat().st_size > 1000
    assert (tmp_path / "demo" / "cka.csv").read_text().startswith("block,10,13")
