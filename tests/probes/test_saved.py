"""Saved probes and written results: the standardisation travels with the estimator, probes saved by
the previous format still predict the same, and no output is replaced unless asked."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from diffprobe.errors import OutputExistsError
from diffprobe.probes import ProbeConfig, load_probe, predict_split, run_probe, save_probe
from diffprobe.probes.data import load_features
from diffprobe.probes.io import FORMAT_VERSION
from diffprobe.store.memory import MemoryStore
from tests.probes.support import blobs_store

FORMAT_1 = Path(__file__).parent / "data" / "format_v1"
KEY = "t0090_b07_p2"


@pytest.fixture(scope="module")
def store():
    return blobs_store(ts=(90,), blocks=(7,), pools=(2,))


@pytest.fixture(scope="module")
def result(store):
    return run_probe(store, ProbeConfig("logistic", (KEY,), {"C": 1.0}))


def test_saved_probe_keeps_its_standardisation(store, result, tmp_path):
    out = save_probe(result.trained, tmp_path / "p")
    doc = json.loads((out / "probe.json").read_text())
    assert doc["version"] == FORMAT_VERSION == 2 and doc["params"]["standardize"] is True
    assert doc["learned"]["mean_"] == doc["learned"]["scale_"] == {"kind": "array"}
    back = load_probe(out)
    np.testing.assert_array_equal(back.estimator.mean_, result.trained.estimator.mean_)
    np.testing.assert_array_equal(back.estimator.scale_, result.trained.estimator.scale_)
    val = load_features(store, "val", [KEY])
    np.testing.assert_array_equal(back.predict_proba(val), result.trained.predict_proba(val))


@pytest.mark.parametrize("name,standardized", [("logistic", True), ("knn_raw", False)])
def test_format_1_probes_load_and_predict_the_same(name, standardized, tmp_path):
    """Probes written before estimators standardised themselves (see data/format_v1/README.md)."""
    doc = json.loads((FORMAT_1 / name / "probe.json").read_text())
    assert doc["version"] == 1 and doc["standardized"] is standardized and "standardize" not in doc["params"]
    ref = np.load(FORMAT_1 / f"{name}.npz")
    trained = load_probe(FORMAT_1 / name)
    assert trained.estimator.standardize is standardized
    assert (trained.estimator.mean_ is not None) is standardized
    np.testing.assert_allclose(trained.estimator.predict_proba(ref["X"]), ref["proba"], rtol=1e-6, atol=1e-7)
    if standardized:  # the statistics matter: without them the same weights predict otherwise
        trained.estimator.mean_ = None
        assert not np.allclose(trained.estimator.predict_proba(ref["X"]), ref["proba"], atol=1e-3)
    # … and through a store, the way `diffprobe probe predict` applies it
    s = MemoryStore.from_arrays({"val": {KEY: ref["X"].reshape(-1, 6, 2, 2)}}, {"val": ref["y"]}, [f"class{c}" for c in range(4)])
    pred = predict_split(load_probe(FORMAT_1 / name), s, "val")
    np.testing.assert_allclose(pred.proba, ref["proba"], rtol=1e-6, atol=1e-7)
    # re-saved, it is a format-2 probe with the same predictions
    again = load_probe(save_probe(load_probe(FORMAT_1 / name), tmp_path / name))
    np.testing.assert_allclose(again.estimator.predict_proba(ref["X"]), ref["proba"], rtol=1e-6, atol=1e-7)


def test_library_writers_refuse_an_existing_output(store, result, tmp_path):
    report = tmp_path / "r.json"
    result.save_json(report)
    before = report.read_text()
    with pytest.raises(OutputExistsError, match="already exists; pass --overwrite"):
        result.save_json(report)
    assert report.read_text() == before
    result.save_json(report, overwrite=True)

    saved = tmp_path / "probe"
    save_probe(result.trained, saved)
    with pytest.raises(OutputExistsError, match="already exists; pass --overwrite to replace it, or choose another --save"):
        save_probe(result.trained, saved)
    save_probe(result.trained, saved, overwrite=True)
    (tmp_path / "empty").mkdir()
    save_probe(result.trained, tmp_path / "empty")  # an empty folder is free to use

    pred = predict_split(load_probe(saved), store, "val")
    table = tmp_path / "preds.csv"
    pred.write_csv(table)
    with pytest.raises(OutputExistsError, match="already exists"):
        pred.write_csv(table)
    pred.write_csv(table, overwrite=True)
    assert len(table.read_text().splitlines()) == 1 + 80

