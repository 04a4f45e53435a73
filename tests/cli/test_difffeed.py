"""`diffprobe probe difffeed DATA` and `probe predict` of a saved DifFeed probe, through CliRunner."""

from __future__ import annotations

import json
import shutil

from click.testing import CliRunner

import diffprobe
from diffprobe.cli import main
from tests.helpers import FMNIST


def run(*args) -> tuple[int, str]:
    r = CliRunner().invoke(main, [str(a) for a in args])
    return r.exit_code, r.output


def test_difffeed_trains_reports_saves_and_predicts(tmp_path):
    data = tmp_path / "data"
    for split, per in (("train", 2), ("val", 1)):
        for cls in sorted((FMNIST / split).iterdir())[:3]:
            (data / split / cls.name).mkdir(parents=True)
            for f in sorted(cls.glob("*.png"))[:per]:
                shutil.copy(f, data / split / cls.name / f.name)
    small = ("-p", "dim=16", "-p", "heads=2", "-p", "depth=1", "--device", "cpu", "--epochs", "2")
    code, text = run("probe", "difffeed", data, "--model", "adm-32-fmnist", *small, "--dry-run")
    assert code == 0, text
    cfg = json.loads(text)
    assert cfg["keys"] == ["t0150_b15_full"] and cfg["params"]["epochs"] == 2 and cfg["params"]["t"] == 150
    code, text = run("probe", "difffeed", data, "--model", "adm-32-fmnist", "--feedback", "12-18:3", *small,
                     "--out", tmp_path / "r.json", "--save", tmp_path / "saved", "--checkpoint-dir", tmp_path / "ck")  # fmt: skip
    assert code == 0, text
    assert "difffeed probe on t0150_b15_full: train train (6) → eval val (3)" in text and "top-1" in text
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["probe"] == "difffeed" and result["n_eval"] == 3 and 0 <= result["metrics"]["top1"] <= 1
    assert (tmp_path / "ck" / "difffeed-checkpoint.pt").exists()
    code, text = run("probe", "predict", tmp_path / "saved", data, "--split", "val", "--out", tmp_path / "p.csv")
    assert code == 0, text
    assert "predicted 3 items of 'val' with the difffeed probe on t0150_b15_full" in text
    assert len((tmp_path / "p.csv").read_text().splitlines()) == 4
    code, text = run("probe", "difffeed", data, "--model", "adm-32-fmnist", *small, "--out", tmp_path / "r.json")
    assert code == 1 and "already exists; pass --overwrite" in text  # refused before training
    code, text = run("probe", "difffeed", data, "--model", "adm-32-fmnist", "--blocks", "5", *small)
    assert code == 1 and "is not before the read block 5" in text
    assert "difffeed" not in diffprobe.probes.PROBES  # not offered where features come from a store (sweep)
