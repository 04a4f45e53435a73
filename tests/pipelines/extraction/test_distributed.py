"""Scale-out extraction: dask LocalCluster, worker loss, static shards, finalize — all byte-identical."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

import diffprobe
from diffprobe.cli import main
from tests.helpers import FMNIST_CKPT, extract_config

pytestmark = pytest.mark.slow

KW = dict(unit_size=8, splits=("val",), timesteps=(150,))


def feature_files(store: Path) -> dict[str, bytes]:
    """Every chunk/shard file of every feature and item array, by relative path."""
    return {str(f.relative_to(store)): f.read_bytes() for f in sorted(store.glob("val/*/c/**/*")) if f.is_file()}


@pytest.fixture(scope="module")
def reference(tmp_path_factory, small_manifest) -> Path:
    out = tmp_path_factory.mktemp("ref") / "ref.zarr"
    diffprobe.extract_features(extract_config(small_manifest, out, **KW), progress=False)
    return out


def test_local_cluster_is_byte_identical(small_manifest, reference, tmp_path):
    out = tmp_path / "dask.zarr"
    s = diffprobe.extract_features(extract_config(small_manifest, out, workers=2, **KW), progress=False)
    assert s.units_run == 7 and s.items == 50
    assert feature_files(out) == feature_files(reference)
    with diffprobe.open_store(out) as st:
        assert st.is_complete() and st.valid("val").all()


def _worker_pids() -> list[int]:
    """Dask worker processes spawned (via multiprocessing) by this test process."""
    me = os.getpid()
    parents: dict[int, int] = {}
    cmd: dict[int, str] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                parents[int(d.name)] = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
                cmd[int(d.name)] = (d / "cmdline").read_bytes().decode(errors="replace")
            except (OSError, IndexError, ValueError):
                continue

    def descends(p: int) -> bool:
        while p and p in parents:
            p = parents[p]
            if p == me:
                return True
        return False

    return [p for p in parents if descends(p) and "spawn_main" in cmd.get(p, "")]


def test_worker_killed_mid_run_is_recovered(small_manifest, reference, tmp_path):
    out = tmp_path / "killed.zarr"
    killed: list[int] = []

    def killer() -> None:
        markers = out / "_progress" / "val"
        deadline = time.time() + 300
        while time.time() < deadline:
            n = len(list(markers.glob("unit-*.json"))) if markers.is_dir() else 0
            if 1 <= n <= 4:
                pids = _worker_pids()
                if pids:
                    os.kill(pids[0], signal.SIGKILL)
                    killed.append(pids[0])
                    # what a killed worker leaves when its unit is held in pieces (units over 2 GiB)
                    (markers / ".unit-000006.k1ll3d.spill").write_bytes(b"\0" * 4096)
                    return
            time.sleep(0.05)

    th = threading.Thread(target=killer)
    th.start()
    s = diffprobe.extract_features(extract_config(small_manifest, out, workers=2, **KW), progress=False)
    th.join()
    assert killed, "no worker was killed: the test did not exercise recovery"
    assert s.units_run == 7
    assert feature_files(out) == feature_files(reference)
    assert list(out.rglob("*.spill")) == [], "the killed worker's spilled pieces are removed when the run ends"


def _cli(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "diffprobe", "-q", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _shard_args(manifest: Path, out: Path, shard: str) -> list[str]:
    return [
        "extract", str(manifest), "--model", "adm-32-fmnist", "--checkpoint", str(FMNIST_CKPT), "--t", "150",
        "--blocks", "10,13", "--pool", "1,2", "--out", str(out), "--splits", "val", "--unit-size", "8",
        "--batch-size", "16", "--loader-workers", "0", "--shard", shard, "--no-progress",
    ]  # fmt: skip


def test_two_shards_at_once_then_finalize(small_manifest, reference, tmp_path):
    out = tmp_path / "shards.zarr"
    procs = [_cli(*_shard_args(small_manifest, out, f"{i}/2")) for i in range(2)]
    for p in procs:
        output = p.communicate(timeout=600)[0].decode()
        assert p.returncode == 0, output
    r = CliRunner().invoke(main, ["store", "finalize", str(out)])
    assert r.exit_code == 0, r.output
    assert r.output.startswith("finalized")
    assert feature_files(out) == feature_files(reference)
    with diffprobe.open_store(out) as s:
        assert s.attrs["finalized"] and s.is_complete()


def test_finalize_incomplete_names_missing_units(small_manifest, tmp_path):
    out = tmp_path / "half.zarr"
    p = _cli(*_shard_args(small_manifest, out, "0/2"))
    assert p.wait(timeout=600) == 0
    r = CliRunner().invoke(main, ["store", "finalize", str(out)])
    assert r.exit_code == 1
    assert "missing: val/t0150_b13_p2: 3 unit(s) not done (1, 3, 5)" in r.output and "NOT complete" in r.output
    with diffprobe.open_store(out) as s:
        assert "finalized" not in s.attrs


def test_unit_run_twice_is_harmless(small_manifest, reference, tmp_path):
    import shutil

    out = shutil.copytree(reference, tmp_path / "twice.zarr")
    before = feature_files(out)
    for u in (2, 5):
        (out / "_progress" / "val" / f"unit-{u:06d}.json").unlink()
    s = diffprobe.extract_features(extract_config(small_manifest, out, **KW), progress=False)
    assert s.units_run == 2 and s.units_skipped == 5
    assert feature_files(out) == before


def test_hdf5_refuses_parallel_writers(small_manifest, tmp_path):
    with pytest.raises(diffprobe.errors.ConfigError, match="HDF5 stores take one writer"):
        diffprobe.extract_features(extract_config(small_manifest, tmp_path / "x.h5", shard=(0, 2), **KW), progress=False)
