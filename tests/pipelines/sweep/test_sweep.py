"""Sweeps over keys, best keys, plots, the joint linear sweep and the demo's probe step."""

from __future__ import annotations

import json

import pytest

from diffprobe.errors import OutputExistsError
from diffprobe.pipelines.demo import demo_probes
from diffprobe.pipelines.sweep.plots import plot_sweep
from diffprobe.pipelines.sweep.run import SweepConfig, best_keys, run_sweep, select_keys
from diffprobe.probes.errors import ProbeError
from tests.probes.support import blobs_store, real_store


@pytest.fixture(scope="module")
def store():
    return blobs_store()


def test_select_keys_filters_and_errors(store):
    assert len(select_keys(store, "train", SweepConfig())) == 12
    keys = select_keys(store, "train", SweepConfig(t=(90,), pools=(2, None)))
    assert [k.name for k in keys] == ["t0090_b04_p2", "t0090_b04_full", "t0090_b07_p2", "t0090_b07_full"]
    with pytest.raises(ProbeError, match=r"expected the filters t=\[300\].*the store has t ∈ \{10, 90\}"):
        select_keys(store, "train", SweepConfig(t=(300,)))
    with pytest.raises(ProbeError, match="unknown key\\(s\\) nope"):
        select_keys(store, "train", SweepConfig(keys=("nope",)))


def test_sweep_table_best_and_plots(store, tmp_path):
    res = run_sweep(store, SweepConfig(probe="logistic", params={"C": 1.0}), tmp_path)
    assert len(res.rows) == 12
    best = res.best["overall"]
    assert best["t"] == 90 and res.best["per_t"]["90"]["top1"] > res.best["per_t"]["10"]["top1"]  # blobs separate best at t=90
    assert set(res.best["per_block"]) == {"4", "7"} and set(res.best["per_t"]) == {"10", "90"}
    assert {"table", "results", "best", "acc_vs_t", "acc_vs_block", "acc_vs_pool"} <= set(res.files)
    doc = json.loads((tmp_path / "results.json").read_text())
    assert doc["config"]["probe"] == "logistic" and len(doc["results"]) == 12
    assert all(0 <= r["top1"] <= 1 for r in res.rows)


def test_joint_linear_sweep_is_one_fit_per_key_row(store):
    cfg = SweepConfig(probe="linear", params={"epochs": 20, "batch_size": 16, "lr": (0.01, 0.1), "schedule": "constant"}, t=(90,))
    joint = run_sweep(store, cfg)
    alone = run_sweep(store, SweepConfig(probe="linear", params={"epochs": 20, "batch_size": 16, "lr": (0.01, 0.1), "schedule": "constant"}, t=(90,), joint=False))
    assert [r["key"] for r in joint.rows] == [r["key"] for r in alone.rows]
    assert all(r["top1"] > 0.5 for r in joint.rows)
    assert all(json.loads(r["selected"])["best_lr"] in (0.01, 0.1) for r in joint.rows)


def test_sweep_visits_keys_present_in_both_splits():
    from diffprobe.store.memory import MemoryStore

    base = blobs_store(ts=(90,), blocks=(7,), pools=(1, 2))
    extra = {**base.data["val"].arrays, "t0050_b03_p1": base.data["val"].arrays["t0090_b07_p1"]}  # eval-only key
    train_only = {**base.data["train"].arrays, "t0050_b09_p1": base.data["train"].arrays["t0090_b07_p1"]}
    s = MemoryStore.from_arrays({"train": train_only, "val": extra}, {"train": base.labels("train"), "val": base.labels("val")})
    res = run_sweep(s, SweepConfig(params={"C": 1.0}))
    assert [r["key"] for r in res.rows] == ["t0090_b07_p1", "t0090_b07_p2"]


def test_best_keys_and_plots_handle_gaps(tmp_path):
    rows = [
        {"key": "t0090_b24_p1", "t": 90, "block": 24, "pool": "1", "top1": 0.6, "top5": 0.8},
        {"key": "t0150_b24_full", "t": 150, "block": 24, "pool": "full", "top1": 0.7, "top5": 0.9},
        {"key": "mae_layer6", "t": "", "block": "", "pool": "", "top1": 0.9, "top5": 0.95},
    ]
    assert best_keys(rows)["overall"]["key"] == "mae_layer6"
    files = plot_sweep(rows, tmp_path, "logistic")
    assert set(files) == {"acc_vs_t", "acc_vs_block", "acc_vs_pool"}
    assert plot_sweep(rows[2:], tmp_path / "none") == {}


def test_demo_probes_beats_raw_pixels(tmp_path):
    summary = demo_probes(real_store(), tmp_path)
    assert len(summary.scores) == 6 and summary.best.top1 == max(s.top1 for s in summary.scores)
    assert summary.best.top1 > summary.pixels_top1 and summary.gain > 0
    for name in ("table", "acc_vs_t", "acc_vs_block", "acc_vs_pool", "pixels"):
        assert (tmp_path / "probes").exists() and summary.files[name].startswith(str(tmp_path))
    with pytest.raises(OutputExistsError, match="probes already exists"):  # checked before any fit
        demo_probes(real_store(), tmp_path, keys=("no-such-key",))
