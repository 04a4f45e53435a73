"""`diffprobe probe …` and `diffprobe sweep` through click's CliRunner, on the real test store."""

from __future__ import annotations

import csv
import json

import pytest
from click.testing import CliRunner

from diffprobe.cli import main
from tests.probes.support import real_store


@pytest.fixture(scope="module")
def store() -> str:
    return str(real_store())


def run(*args: str) -> tuple[int, str]:
    res = CliRunner().invoke(main, ["-q", *args], catch_exceptions=False)
    return res.exit_code, res.output


def test_probe_prints_metrics_and_writes_json_csv(store, tmp_path):
    out, table = tmp_path / "r.json", tmp_path / "r.csv"
    code, text = run("probe", "logistic", store, "--t", "90", "--block", "13", "--pool", "2", "--out", str(out), "--csv", str(table))
    assert code == 0, text
    assert "logistic probe on t0090_b13_p2: train train (300) → eval val (200)" in text
    assert "top-1" in text and "selected: C=" in text
    doc = json.loads(out.read_text())
    assert 0.6 < doc["metrics"]["top1"] <= 1 and len(doc["metrics"]["confusion"]) == 10
    assert doc["store"]["config_hash"] and doc["keys"] == [{"key": "t0090_b13_p2", "t": 90, "block": 13, "pool": 2}]
    rows = list(csv.DictReader(table.open()))
    assert rows[0]["probe"] == "logistic" and rows[0]["t"] == "90" and rows[0]["pool"] == "2"
    assert float(rows[0]["top1"]) == doc["metrics"]["top1"]


def test_save_then_predict_on_a_store(store, tmp_path):
    saved = tmp_path / "knn"
    code, text = run("probe", "knn", store, "--t", "90", "--block", "13", "--pool", "1", "-p", "k=10", "--save", str(saved))
    assert code == 0, text
    preds = tmp_path / "preds.csv"
    code, text = run("probe", "predict", str(saved), store, "--split", "val", "--out", str(preds))
    assert code == 0, text
    assert "predicted 200 items of 'val' with the knn probe on t0090_b13_p1" in text
    header = preds.read_text().splitlines()[0].split(",")
    assert header[:3] == ["id", "label", "pred"] and header[3] == "p_0_tshirt_top" and len(header) == 13


def test_several_keys_params_and_json(store):
    code, text = run("probe", "linear", store, "--t", "90", "--block", "10,13", "--pool", "1", "-p", "lr=0.01,0.1", "-p", "epochs=5", "--json")
    assert code == 0, text
    doc = json.loads(text)
    assert [k["key"] for k in doc["keys"]] == ["t0090_b10_p1", "t0090_b13_p1"]
    assert doc["config"]["params"] == {"lr": [0.01, 0.1], "epochs": 5, "device": "cpu"}  # --device auto, resolved


@pytest.mark.parametrize("args,message", [
    (["--t", "90", "--block", "24", "--pool", "2"], "block 24 does not exist: this model has blocks 1..19 (1..9 input, 10 middle, 11..19 output); stored blocks: 10 (middle_block), 13 (output_blocks.2)"),
    (["--key", "mae_layer6"], "unknown key 'mae_layer6'"),
    (["--t", "90", "--block", "13", "--pool", "2", "--eval-split", "test"], "unknown split 'test'; valid: train, val"),
    (["--t", "90", "--block", "13", "--pool", "2", "-p", "gamma=2"], "unknown parameter(s) gamma for probe 'knn'; valid:"),
    (["--t", "90", "--block", "13", "--pool", "2", "-p", "gamma"], "expected --param NAME=VALUE"),
])
def test_clean_errors(store, args, message):
    code, text = run("probe", "knn", store, *args)
    assert code != 0 and "Error: " in text and message in text
    assert "Traceback" not in text


def test_dry_run_prints_the_config(store):
    code, text = run("probe", "attention", store, "--t", "90", "--block", "13", "--pool", "4", "-p", "dim=64", "--folds", "3", "--dry-run")
    assert code == 0, text
    cfg = json.loads(text)
    assert cfg["probe"] == "attention" and cfg["keys"] == ["t0090_b13_p4"] and cfg["params"] == {"dim": 64, "device": "cpu"}
    assert cfg["data"]["folds"] == 3


def test_sweep_writes_table_best_and_plots(store, tmp_path):
    out = tmp_path / "sweep"
    code, text = run("sweep", store, "--probe", "logistic", "--pools", "1,2", "-p", "C=0.1", "--out", str(out))
    assert code == 0, text
    assert "best: t0090_b1" in text
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert sorted(r["key"] for r in rows) == ["t0090_b10_p1", "t0090_b10_p2", "t0090_b13_p1", "t0090_b13_p2"]
    assert json.loads((out / "best.json").read_text())["overall"]["key"] in {r["key"] for r in rows}
    for png in ("acc_vs_block.png", "acc_vs_pool.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (out / "acc_vs_t.png").exists()  # one t stored: its bars would repeat the block figure's numbers
