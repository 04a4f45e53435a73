"""The main job, `diffprobe demo`, end to end on the bundled model and images."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

import diffprobe
from diffprobe.cli import main

pytestmark = pytest.mark.slow


def test_demo_end_to_end(tmp_path):
    r = CliRunner().invoke(main, ["-q", "demo", "--out", str(tmp_path), "--no-progress"])
    assert r.exit_code == 0, r.output
    assert "train: 1000 items, 12 arrays" in r.output and "val: 500 items, 31 arrays" in r.output
    assert "vs raw pixels" in r.output and "CKA heatmap" in r.output
    with diffprobe.open_store(tmp_path / "features.zarr") as s:
        assert s.is_complete() and s.valid("train").all()
    best = json.loads((tmp_path / "probes" / "best.json").read_text())
    assert best  # the sweep's best keys
    for f in ("acc_vs_t.png", "acc_vs_block.png", "acc_vs_pool.png", "results.csv"):
        assert (tmp_path / "probes" / f).stat().st_size > 0
    assert (tmp_path / "cka" / "cka.png").stat().st_size > 0
    csv = (tmp_path / "cka" / "cka.csv").read_text().splitlines()
    assert len(csv) == 20  # header + 19 blocks
    # diffusion features beat raw pixels on the real slice
    line = next(ln for ln in r.output.splitlines() if ln.startswith("best:"))
    gain = float(line.split("(")[-1].split(" points")[0])
    assert gain > 2.0
    # re-running reuses the store: nothing is extracted again
    r2 = CliRunner().invoke(main, ["-q", "demo", "--out", str(tmp_path), "--no-progress"])
    assert r2.exit_code == 0 and "items: 0 (0 U-Net forwards)" in r2.output
