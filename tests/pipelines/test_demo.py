"""The main job, `diffprobe demo`, end to end on the bundled model and images."""

from __future__ import annotations

import csv
import json

import pytest
from click.testing import CliRunner

import diffprobe
from diffprobe.cli import main
from diffprobe.pipelines.demo import BLOCKS_T, DEMO_TIMESTEPS, SWEEP_POOL, T_BLOCK, demo_keys


def test_demo_keys_are_a_cross_through_t_and_block():
    keys = demo_keys(19)
    assert len(keys) == 19 + len(DEMO_TIMESTEPS) - 1 + 1  # blocks at t=90, t at block 12, pool 2 at (90, 12)
    assert f"t{BLOCKS_T:04d}_b01_p{SWEEP_POOL}" in keys and f"t0500_b{T_BLOCK:02d}_p{SWEEP_POOL}" in keys
    assert f"t{BLOCKS_T:04d}_b{T_BLOCK:02d}_p2" in keys and len(set(keys)) == len(keys)


def test_quick_demo_end_to_end(tmp_path, figures):
    """`diffprobe demo --quick`: the whole job on 150 images — every output made, every figure drawn."""
    r = CliRunner().invoke(main, ["-q", "demo", "--quick", "--out", str(tmp_path), "--no-progress"])
    assert r.exit_code == 0, r.output
    assert "train: 100 items, 44 arrays" in r.output and "val: 50 items, 44 arrays" in r.output
    assert "blocks 1-19 at t=90: 150 items (150 U-Net forwards)" in r.output
    assert "logistic probes on 23 keys" in r.output and "vs raw pixels" in r.output and "CKA heatmap" in r.output
    with diffprobe.open_store(tmp_path / "features.zarr") as s:
        assert s.is_complete() and s.valid("train").all()
    rows = list(csv.DictReader((tmp_path / "probes" / "results.csv").open()))
    assert len(rows) == 24 and rows[-1]["key"] == "pixels" and {r["metric"] for r in rows} == {"top1"}
    assert {f.name for f in (tmp_path / "probes").iterdir()} >= {"acc_vs_t.png", "acc_vs_block.png", "acc_vs_pool.png", "results.csv",
                                                                 "results.json", "best.json", "pixels.json"}  # fmt: skip
    assert len((tmp_path / "cka" / "cka.csv").read_text().splitlines()) == 20  # header + 19 blocks
    for ax in (figures["acc_vs_block.png"].axes[0], figures["acc_vs_t.png"].axes[0]):
        assert any(ln.get_label().startswith("raw pixels (") for ln in ax.get_lines())


@pytest.mark.slow
def test_demo_end_to_end(tmp_path, figures):
    r = CliRunner().invoke(main, ["-q", "demo", "--out", str(tmp_path), "--no-progress"])
    assert r.exit_code == 0, r.output
    assert "train: 1000 items, 44 arrays" in r.output and "val: 500 items, 44 arrays" in r.output
    assert "blocks 1-19 at t=90: 1500 items (1500 U-Net forwards)" in r.output
    assert "block 12 at t=10,300,500: 1500 items (4500 U-Net forwards)" in r.output
    assert "logistic probes on 23 keys" in r.output and "vs raw pixels" in r.output and "CKA heatmap" in r.output
    with diffprobe.open_store(tmp_path / "features.zarr") as s:
        assert s.is_complete() and s.valid("train").all()
    best = json.loads((tmp_path / "probes" / "best.json").read_text())
    assert best  # the sweep's best keys
    for f in ("acc_vs_t.png", "acc_vs_block.png", "acc_vs_pool.png", "results.csv"):
        assert (tmp_path / "probes" / f).stat().st_size > 0
    assert (tmp_path / "cka" / "cka.png").stat().st_size > 0
    csv_rows = (tmp_path / "cka" / "cka.csv").read_text().splitlines()
    assert len(csv_rows) == 20  # header + 19 blocks
    # diffusion features beat raw pixels on the real slice
    line = next(ln for ln in r.output.splitlines() if ln.startswith("best:"))
    gain = float(line.split("(")[-1].split(" points")[0])
    assert gain > 2.0

    # the paper's shape, with wide margins (one val image is 0.2 points)
    acc = {(int(row["t"]), int(row["block"]), row["pool"]): 100 * float(row["top1"])
           for row in csv.DictReader((tmp_path / "probes" / "results.csv").open()) if row["key"] != "pixels"}  # fmt: skip
    pixels = 100 * json.loads((tmp_path / "probes" / "pixels.json").read_text())["metrics"]["top1"]
    by_block = {b: acc[(BLOCKS_T, b, "1")] for b in range(1, 20)}
    peak = max(by_block, key=by_block.__getitem__)
    assert 11 <= peak <= 14  # a few blocks after the middle block (10)
    assert by_block[1] < pixels - 20 and by_block[peak] > pixels + 4 and by_block[19] < by_block[peak] - 4
    by_t = {t: acc[(t, T_BLOCK, "1")] for t in DEMO_TIMESTEPS}
    assert by_t[500] < max(by_t.values()) - 8  # falls with t

    # the figures: the raw-pixel baseline is drawn, ticks are the measured values
    block_ax, t_ax = figures["acc_vs_block.png"].axes[0], figures["acc_vs_t.png"].axes[0]
    for ax in (block_ax, t_ax, figures["acc_vs_pool.png"].axes[0]):
        assert any(ln.get_label().startswith("raw pixels (") for ln in ax.get_lines())
        lo, hi = ax.get_ylim()
        assert lo < pixels < hi and hi <= 100
    assert [t.get_text() for t in block_ax.get_xticklabels()] == [str(b) for b in range(1, 20)]
    assert [t.get_text() for t in t_ax.get_xticklabels()] == [str(t) for t in DEMO_TIMESTEPS]

    # re-running reuses the store (nothing is extracted again) and regenerates probes/ and cka/
    r2 = CliRunner().invoke(main, ["-q", "demo", "--out", str(tmp_path), "--no-progress"])
    assert r2.exit_code == 0, r2.output
    assert "blocks 1-19 at t=90: 0 items (0 U-Net forwards)" in r2.output and "(4500 U-Net forwards)" not in r2.output
    assert (tmp_path / "probes" / "results.csv").read_text().count("\n") == 25  # header, 23 keys, the raw pixels
