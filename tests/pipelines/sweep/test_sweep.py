"""Sweeps over keys, best keys, plots, the joint linear sweep and the demo's probe step."""

from __future__ import annotations

import json

import pytest

from diffprobe.errors import OutputExistsError, StoreKeyError
from diffprobe.pipelines.demo import demo_probes
from diffprobe.pipelines.sweep.plots import plot_sweep
from diffprobe.pipelines.sweep.run import SweepConfig, best_keys, run_sweep, select_keys
from diffprobe.store.select import KeySelection
from tests.probes.support import blobs_store, real_store


@pytest.fixture(scope="module")
def store():
    return blobs_store()


def test_select_keys_takes_every_stored_value_of_an_axis_left_out(store):
    assert len(select_keys(store, "train", SweepConfig())) == 12
    keys = select_keys(store, "train", SweepConfig(selection=KeySelection(t=(90,), pools=(2, None))))
    assert [k.name for k in keys] == ["t0090_b04_p2", "t0090_b04_full", "t0090_b07_p2", "t0090_b07_full"]
    with pytest.raises(StoreKeyError, match=r"unknown t 300 in split 'train'; valid: t ∈ \{10, 90\}"):
        select_keys(store, "train", SweepConfig(selection=KeySelection(t=(300,))))
    with pytest.raises(StoreKeyError, match="unknown key 'nope'"):
        select_keys(store, "train", SweepConfig(selection=KeySelection(names=("nope",))))
    assert [k.name for k in select_keys(store, "train", SweepConfig(selection=KeySelection(names=("t0010_b04_p1",))))] == ["t0010_b04_p1"]


def test_sweep_table_best_and_plots(store, tmp_path):
    res = run_sweep(store, SweepConfig(probe="logistic", params={"C": 1.0}), tmp_path)
    assert len(res.rows) == 12
    best = res.best["overall"]
    assert best["t"] == 90 and res.best["per_t"]["90"]["score"] > res.best["per_t"]["10"]["score"]  # blobs separate best at t=90
    assert set(res.best["per_block"]) == {"4", "7"} and set(res.best["per_t"]) == {"10", "90"}
    assert {"table", "results", "best", "acc_vs_t", "acc_vs_block", "acc_vs_pool"} <= set(res.files)
    doc = json.loads((tmp_path / "results.json").read_text())
    assert doc["config"]["probe"] == "logistic" and len(doc["results"]) == 12
    assert all(0 <= r["top1"] <= 1 and r["score"] == r["top1"] and r["metric"] == "top1" for r in res.rows)
    assert {r["pool"] for r in res.rows} == {1, 2, "full"}  # numbers are numbers
    text = (tmp_path / "results.csv").read_bytes()
    assert b"\r\n" not in text and text.count(b"\n") == 13
    assert json.loads((tmp_path / "best.json").read_text())["overall"]["pool"] in (1, 2, "full")


def test_joint_linear_sweep_is_one_fit_per_key_row(store):
    params = {"epochs": 20, "batch_size": 16, "lr": (0.01, 0.1), "schedule": "constant"}
    cfg = SweepConfig(probe="linear", params=params, selection=KeySelection(t=(90,)))
    joint = run_sweep(store, cfg)
    alone = run_sweep(store, SweepConfig(probe="linear", params=params, selection=KeySelection(t=(90,)), joint=False))
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


def test_best_keys_reports_ties_and_plots_handle_gaps(tmp_path, caplog):
    import logging

    from diffprobe.probes.result import ProbeConfig, ProbeResult
    from diffprobe.store.select import KeyInfo

    def result(name: str, top1: float) -> ProbeResult:
        return ProbeResult(ProbeConfig("knn", (name,)), (KeyInfo.of(name),), "train", "val", {"top1": top1}, [top1], 1, 1, 0.0, {}, {})

    results = [result("t0090_b24_p1", 0.6), result("t0150_b24_full", 0.9), result("mae_layer6", 0.9)]
    with caplog.at_level(logging.WARNING):
        best = best_keys(results)
    assert best["overall"]["key"] == "t0150_b24_full" and best["overall"]["pool"] == "full"
    assert [t["key"] for t in best["ties"]] == ["mae_layer6"] and "2 keys tie for best" in caplog.text
    scores = [(r.keys[0].key, r.score) for r in results if r.keys[0].key is not None]
    assert set(plot_sweep(scores, tmp_path, "logistic")) == {"acc_vs_block"}  # no axis has two values: one bar chart
    assert plot_sweep([], tmp_path / "none") == {}


def test_demo_probes_beats_raw_pixels(tmp_path):
    summary = demo_probes(real_store(), tmp_path)
    assert len(summary.scores) == 6 and summary.best.top1 == max(s.top1 for s in summary.scores)
    assert summary.best.top1 > summary.pixels_top1 and summary.gain > 0
    for name in ("table", "acc_vs_block", "acc_vs_pool", "pixels"):  # one t stored: no acc vs t figure
        assert (tmp_path / "probes").exists() and summary.files[name].startswith(str(tmp_path))
    with pytest.raises(OutputExistsError, match="probes already exists"):  # checked before any fit
        demo_probes(real_store(), tmp_path, keys=("no-such-key",))
