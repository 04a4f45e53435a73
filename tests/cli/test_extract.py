"""`diffprobe extract`, `store info|verify|export` and `demo` through click's CliRunner."""

from __future__ import annotations

import json
import shutil

import numpy as np
from click.testing import CliRunner

import diffprobe
from diffprobe.cli import main
from tests.helpers import FMNIST_CKPT


def _extract_args(manifest, out, *extra):
    return [
        "extract", str(manifest), "--model", "adm-32-fmnist", "--checkpoint", str(FMNIST_CKPT),
        "--t", "50,150", "--blocks", "10", "--blocks", "output_blocks.2", "--pool", "1,2",
        "--out", str(out), "--batch-size", "16", "--loader-workers", "0", "--unit-size", "32", *extra,
    ]  # fmt: skip


def test_extract_dry_run_then_run_equals_library(small_manifest, small_store, tmp_path):
    out = tmp_path / "cli.zarr"
    r = CliRunner().invoke(main, _extract_args(small_manifest, out, "--dry-run"))
    assert r.exit_code == 0, r.output
    assert '"timesteps": [' in r.output and "array t0150_b13_p2 [128, 2, 2]" in r.output and "estimated size" in r.output
    assert not out.exists()
    r = CliRunner().invoke(main, _extract_args(small_manifest, out, "--no-progress"))
    assert r.exit_code == 0, r.output
    assert "items: 150 (300 model forwards), failed: 0" in r.output
    with diffprobe.open_store(out) as a, diffprobe.open_store(small_store) as b:
        assert a.keys("val") == b.keys("val")
        assert all(np.array_equal(a.read(s, k), b.read(s, k)) for s in a.splits for k in a.keys(s))


def test_extract_refusal_is_a_clean_error(small_manifest, small_store, tmp_path):
    out = shutil.copytree(small_store, tmp_path / "s.zarr")
    r = CliRunner().invoke(main, _extract_args(small_manifest, out, "--seed", "7"))
    assert r.exit_code == 1 and "seed: store has 0, this run 7" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(main, _extract_args(small_manifest, out, "--pool", "zero"))
    assert r.exit_code == 2 and "expected a pool size (a positive integer) or 'full', got 'zero'" in r.output


def test_store_info_verify_export(small_store, tmp_path):
    r = CliRunner().invoke(main, ["store", "info", str(small_store)])
    assert r.exit_code == 0, r.output
    assert "complete" in r.output and "t0150_b13_p2" in r.output and "units 4/4" in r.output
    r = CliRunner().invoke(main, ["store", "info", str(small_store), "--json"])
    info = json.loads(r.output)
    assert info["splits"]["val"]["arrays"]["t0050_b10_p1"]["shape"] == [50, 128, 1, 1]
    r = CliRunner().invoke(main, ["store", "verify", str(small_store)])
    assert r.exit_code == 0 and r.output.startswith("ok:")
    r = CliRunner().invoke(main, ["store", "export", str(small_store), str(tmp_path / "x.h5")])
    assert r.exit_code == 0 and (tmp_path / "x.h5").is_file()


def test_verify_fails_on_incomplete_store(small_store, tmp_path):
    out = shutil.copytree(small_store, tmp_path / "inc.zarr")
    (out / "_progress" / "val" / "unit-000001.json").unlink()
    r = CliRunner().invoke(main, ["store", "verify", str(out)])
    assert r.exit_code == 1
    assert "incomplete: val/t0050_b10_p1: 1 unit(s) not done (1)" in r.output and "NOT complete" in r.output


def test_block_ranges_and_full_pool(small_manifest, tmp_path):
    args = _extract_args(small_manifest, tmp_path / "r.zarr", "--dry-run")
    args[args.index("10")] = "8-10"
    args[args.index("1,2")] = "1,full"
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    assert "array t0050_b08_p1 [128, 1, 1]" in r.output and "array t0150_b10_full [128, 8, 8]" in r.output
    assert "array t0150_b13_full [128, 16, 16]" in r.output
    args[args.index("8-10")] = "10-8"
    assert CliRunner().invoke(main, args).exit_code == 2


def test_fuse_timesteps_option(small_manifest, tmp_path):
    out = tmp_path / "fused.zarr"
    r = CliRunner().invoke(main, _extract_args(small_manifest, out, "--dry-run", "--forward-batch", "4"))
    assert r.exit_code == 0, r.output
    assert "forward: 4 images × 2 fused (t, draw) passes" in r.output  # the CPU default at 4 images
    r = CliRunner().invoke(main, _extract_args(small_manifest, out, "--dry-run", "--fuse-timesteps", "3"))
    assert r.exit_code == 0, r.output
    assert "forward: 16 images × 3 fused (t, draw) passes" in r.output
    r = CliRunner().invoke(main, _extract_args(small_manifest, out, "--fuse-timesteps", "0"))
    assert r.exit_code == 2 and "--fuse-timesteps" in r.output


def test_dask_workers_keep_their_logging_quiet_unless_asked(small_manifest, tmp_path):
    """`extract --workers 2` prints its summary, not dask's ~30 INFO lines (those need -v), and no traceback."""
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "diffprobe", "extract", str(small_manifest), "-m", "adm-32-fmnist", "--t", "90", "--blocks", "3",
           "--splits", "val", "--out", str(tmp_path / "s.zarr"), "--workers", "2", "--no-progress"]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "units: 2 run" in r.stdout or "units:" in r.stdout
    assert "distributed." not in r.stderr and "Traceback" not in r.stderr and "CommClosedError" not in r.stderr, r.stderr
