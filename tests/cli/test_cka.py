"""`diffprobe cka blocks|timesteps|stores` through click's CliRunner."""

from __future__ import annotations

import json
import shutil

import numpy as np
from click.testing import CliRunner

import diffprobe
from diffprobe.cli import main


def invoke(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_cka_blocks_writes_csv_json_png(small_store, tmp_path):
    out = tmp_path / "blocks"
    r = invoke("cka", "blocks", small_store, "--split", "val", "--t", "150", "--pool", "2", "--out", out)
    assert r.exit_code == 0, r.output
    assert "CKA 2×2 over 50 items (linear, biased" in r.output
    assert (out / "cka.csv").read_text().splitlines()[0] == "block,10,13"
    meta = json.loads((out / "cka.json").read_text())
    assert meta["selection"]["t"] == 150 and meta["selection"]["pool"] == 2 and (out / "cka.png").stat().st_size > 1000


def test_cka_timesteps_options(small_store, tmp_path):
    out = tmp_path / "ts"
    r = invoke("cka", "timesteps", small_store, "--split", "train", "--block", "13", "--pool", "1", "--kernel", "rbf",
               "--estimator", "minibatch", "--batch-size", "25", "--out", out)  # fmt: skip
    assert r.exit_code == 0, r.output
    meta = json.loads((out / "cka.json").read_text())
    assert meta["row_labels"] == ["50", "150"] and meta["config"]["estimator"] == "minibatch"
    assert meta["run"]["batches"] == 4 and len(meta["run"]["rbf_sigma"]) == 2
    assert (out / "cka.csv").read_text().splitlines()[0] == "t,50,150"


def test_cka_stores_with_imported_features(small_store, tmp_path):
    a = shutil.copytree(small_store, tmp_path / "a.zarr")
    with diffprobe.open_store(a) as s:
        ids = list(s.ids("val"))
    rng = np.random.default_rng(0)
    order = rng.permutation(50)
    np.save(tmp_path / "mae.npy", rng.normal(size=(50, 12)).astype(np.float32))
    (tmp_path / "ids.txt").write_text("\n".join(ids[i] for i in order) + "\n")
    r = invoke("store", "import", tmp_path / "mae.npy", "--into", a, "--name", "mae_layer6", "--split", "val", "--ids", tmp_path / "ids.txt")
    assert r.exit_code == 0, r.output
    assert "as 'mae_layer6' (split 'val', shape (50, 12), float32)" in r.output
    out = tmp_path / "st"
    r = invoke("cka", "stores", small_store, a, "--split", "val", "--keys-a", "t0150_*", "--keys-b", "mae_*", "--out", out)
    assert r.exit_code == 0, r.output
    lines = (out / "cka.csv").read_text().splitlines()
    assert lines[0] == "A \\ B,mae_layer6" and [ln.split(",")[0] for ln in lines[1:]] == [
        "t0150_b10_p1", "t0150_b10_p2", "t0150_b13_p1", "t0150_b13_p2"]  # fmt: skip
    meta = json.loads((out / "cka.json").read_text())
    assert len(meta["stores"]) == 2 and meta["stores"][0]["config_hash"] == meta["stores"][1]["config_hash"]


def test_cli_errors_are_clean(small_store, tmp_path):
    r = invoke("cka", "blocks", small_store, "--split", "val", "--out", tmp_path / "x")
    assert r.exit_code != 0 and "expected a t (the store has several: 50, 150); pass --t" in r.output and "Traceback" not in r.output
    r = invoke("cka", "blocks", small_store, "--split", "val", "--t", "150", "--pool", "zero")
    assert r.exit_code != 0 and "expected a pool size (a positive integer) or 'full', got 'zero'" in r.output
    r = invoke("cka", "blocks", small_store, "--split", "val", "--t", "150", "--blocks", "10,x")
    assert r.exit_code != 0 and "unknown block 'x': give a block number 1..19 or a module path" in r.output
    assert "stored blocks: 10 (middle_block), 13 (" in r.output and "Traceback" not in r.output
    r = invoke("cka", "blocks", small_store, "--split", "val", "--t", "50,150")
    assert r.exit_code == 2 and "expected one value here, got 50, 150" in r.output
    r = invoke("cka", "blocks", small_store, "--split", "val", "--t", "150", "--max-memory", "lots")
    assert r.exit_code != 0 and "expected a size like 2GiB" in r.output
    r = invoke("cka", "blocks", small_store, "--estimator", "exact")
    assert r.exit_code != 0 and "'exact' is not one of 'biased', 'unbiased', 'minibatch'" in r.output
    assert not (tmp_path / "x").exists()


def test_dry_run_prints_resolved_settings(small_store, tmp_path):
    r = invoke("cka", "blocks", small_store, "--t", "90", "--blocks", "1-3,7", "--pool", "full", "--dry-run", "--out", tmp_path / "d")
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert data["selection"]["blocks"] == [1, 2, 3, 7] and data["selection"]["pool"] is None
    assert data["config"]["max_memory"] == 2 * 2**30 and not (tmp_path / "d").exists()
    assert data["color_range"] == "unit" and data["out"] == str(tmp_path / "d")
    r = invoke("cka", "timesteps", small_store, "--block", "13", "--dry-run", "--out", tmp_path / "d")
    assert r.exit_code == 0 and json.loads(r.output)["color_range"] == "auto"  # timesteps: CKA near 1, auto range


def test_help_is_instant_and_lists_commands():
    r = invoke("cka", "--help")
    assert r.exit_code == 0 and all(c in r.output for c in ("blocks", "timesteps", "stores"))
    r = invoke("store", "import", "--help")
    assert r.exit_code == 0 and "--ids FILE" in r.output


def test_several_metrics_write_one_csv_json_and_heatmap_each(small_store, tmp_path):
    r = invoke("cka", "blocks", small_store, "--split", "val", "--t", "150", "--pool", "2", "--metric", "cknna,mutual-knn,cka", "--k", "5",
               "--out", tmp_path / "m")  # fmt: skip
    assert r.exit_code == 0, r.output
    for metric in ("cknna", "mutual-knn", "cka"):
        for ext in ("csv", "json", "png"):
            assert (tmp_path / "m" / f"{metric}.{ext}").stat().st_size > 0, (metric, ext)
        doc = json.loads((tmp_path / "m" / f"{metric}.json").read_text())
        assert doc["metric"] == metric and len(doc[metric]) == 2 and doc["row_labels"] == ["10", "13"]
    knn = json.loads((tmp_path / "m" / "mutual-knn.json").read_text())
    assert knn["similarity"]["k"] == 5 and knn[("mutual-knn")][0][0] == 1.0  # a representation is its own k-NN
    cka = json.loads((tmp_path / "m" / "cka.json").read_text())
    alone = invoke("cka", "blocks", small_store, "--split", "val", "--t", "150", "--pool", "2", "--out", tmp_path / "c")
    assert alone.exit_code == 0 and json.loads((tmp_path / "c" / "cka.json").read_text())["cka"] == cka["cka"]  # cka unchanged
    r = invoke("cka", "blocks", small_store, "--split", "val", "--t", "150", "--metric", "mutual-nn", "--out", tmp_path / "x")
    assert r.exit_code != 0 and "unknown similarity metric 'mutual-nn'" in r.output and "did you mean 'mutual-knn'" in r.output
    assert not (tmp_path / "x").exists()
