"""End-to-end extraction: values, determinism, resume, bad images, config safety, new keys."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import diffprobe
from diffprobe.errors import ConfigError, DataError, StoreError
from tests.helpers import FMNIST, extract_config, read_all


def test_stored_features_equal_direct_computation(small_store, fmnist_backbone):
    """The store holds exactly pool(features(q_sample(x0, t, noise(seed, id, t)))) in float16."""
    from diffprobe.extract.sources.decode import load_image

    with diffprobe.open_store(small_store) as s:
        ids, paths = s.ids("val")[:6], s.paths("val")[:6]
        x0 = torch.from_numpy(np.stack([load_image(p, 32) for p in paths]))
        eps = diffprobe.noise_like(x0, list(ids), 150, seed=0)
        x_t = diffprobe.q_sample(x0, 150, eps, fmnist_backbone.schedule)
        with torch.inference_mode():
            f = fmnist_backbone.features(x_t, 150, [13])[13]
        expect = F.adaptive_avg_pool2d(f, 2).half().numpy()
        assert np.array_equal(s.read("val", 150, 13, 2)[:6], expect)


def test_batch_size_does_not_change_bytes(small_manifest, small_store, tmp_path):
    for bs in (3, 8):
        out = tmp_path / f"bs{bs}.zarr"
        diffprobe.extract_features(extract_config(small_manifest, out, batch_size=bs, unit_size=32, splits=("val",), timesteps=(150,)), progress=False)
        with diffprobe.open_store(out) as a, diffprobe.open_store(small_store) as ref:
            for k in a.keys("val"):
                assert a.read("val", k).tobytes() == ref.read("val", k).tobytes(), (bs, k)


def test_rerun_skips_finished_units(small_manifest, small_store, tmp_path, caplog):
    out = shutil.copytree(small_store, tmp_path / "again.zarr")
    before = {f: f.stat().st_mtime_ns for f in out.rglob("c/*")}
    summary = diffprobe.extract_features(extract_config(small_manifest, out, unit_size=32), progress=False)
    assert summary.units_run == 0 and summary.units_skipped == summary.units_total == 6 and summary.items == 0
    assert before == {f: f.stat().st_mtime_ns for f in out.rglob("c/*")}


def test_new_timestep_computes_only_new_arrays(small_manifest, small_store, tmp_path):
    out = shutil.copytree(small_store, tmp_path / "grow.zarr")
    old = read_all(out)
    shards_before = {f: f.stat().st_mtime_ns for f in out.rglob("t0050_*/c/*")}
    summary = diffprobe.extract_features(extract_config(small_manifest, out, unit_size=32, timesteps=(50, 90), pools=(2,)), progress=False)
    assert summary.units_run == 6 and summary.forwards == 150  # only t=90: one forward per item
    new = read_all(out)
    assert all(np.array_equal(new[k], v) for k, v in old.items())
    assert shards_before == {f: f.stat().st_mtime_ns for f in out.rglob("t0050_*/c/*")}
    with diffprobe.open_store(out) as s:
        assert "t0090_b13_p2" in s.keys("val") and "t0090_b13_p1" not in s.keys("val")
        assert s.config["timesteps"] == [50, 150, 90] and s.is_complete()


def test_different_config_is_refused_and_store_untouched(small_manifest, small_store, tmp_path):
    out = shutil.copytree(small_store, tmp_path / "refuse.zarr")
    old = read_all(out)
    with pytest.raises(StoreError) as e:
        diffprobe.extract_features(extract_config(small_manifest, out, unit_size=32, seed=1, dtype="float32"), progress=False)
    assert "seed: store has 0, this run 1" in str(e.value) and "dtype" in str(e.value) and "--overwrite" in str(e.value)
    assert all(np.array_equal(read_all(out)[k], v) for k, v in old.items())
    diffprobe.extract_features(extract_config(small_manifest, out, seed=1, splits=("val",), timesteps=(150,), overwrite=True), progress=False)
    with diffprobe.open_store(out) as s:
        assert s.splits == ["val"] and s.config["seed"] == 1


def test_dry_run_writes_nothing(small_manifest, tmp_path):
    out = tmp_path / "dry.zarr"
    summary = diffprobe.extract_features(extract_config(small_manifest, out), dry_run=True)
    assert not out.exists()
    text = "\n".join(summary.lines())
    assert "t0150_b13_p2 [128, 2, 2]" in text and "estimated size" in text and "10 (middle_block, 128×8×8)" in text


def test_bad_images_are_recorded_not_fatal(tmp_path):
    root = tmp_path / "imgs"
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i, f in enumerate(sorted((FMNIST / "val" / "1_trouser").glob("*.png"))[:3]):
            shutil.copy(f, root / c / f"ok{i}.png")
    good = (root / "a" / "ok0.png").read_bytes()
    (root / "a" / "zero.png").write_bytes(b"")
    (root / "a" / "trunc.png").write_bytes(good[: len(good) // 2])
    (root / "b" / "text.jpg").write_text("not an image")
    Image.new("RGB", (64, 48), (10, 200, 30)).save(root / "b" / "rgb.png")
    out = tmp_path / "bad.zarr"
    summary = diffprobe.extract_features(extract_config(root, out, timesteps=(50,), blocks=(10,), pools=(1,)), progress=False)
    assert sorted(i for _, i, _ in summary.failures) == ["a/trunc.png", "a/zero.png", "b/text.jpg"]
    with diffprobe.open_store(out) as s:
        ids, valid, x = list(s.ids("train")), s.valid("train"), s.read("train", 50, 10, 1)
        bad = [ids.index(i) for i in ("a/trunc.png", "a/zero.png", "b/text.jpg")]
        assert not valid[bad].any() and valid.sum() == len(ids) - 3
        assert np.isnan(x[bad]).all() and not np.isnan(x[valid]).any()
    from diffprobe.store.inspect import verify_store

    with diffprobe.open_store(out) as s:
        rep = verify_store(s)
        assert rep.ok and len(rep.failed_items["train"]) == 3
    with pytest.raises(DataError, match="--strict"):
        diffprobe.extract_features(extract_config(root, tmp_path / "strict.zarr", timesteps=(50,), blocks=(10,), pools=(1,), strict=True), progress=False)


def test_bad_options_are_clear_errors(small_manifest, tmp_path):
    with pytest.raises(ConfigError, match="pool 16 is larger than block 10's 8×8 map"):
        diffprobe.extract_features(extract_config(small_manifest, tmp_path / "x.zarr", pools=(16,)))
    with pytest.raises(ConfigError, match=r"t in \[0, 999\]"):
        diffprobe.extract_features(extract_config(small_manifest, tmp_path / "x.zarr", timesteps=(1000,)))
    with pytest.raises(KeyError, match="blocks 1..19"):
        diffprobe.extract_features(extract_config(small_manifest, tmp_path / "x.zarr", blocks=(24,)))
    with pytest.raises(ConfigError, match="precision"):
        extract_config(small_manifest, tmp_path / "x.zarr", precision="int8")
    assert not (tmp_path / "x.zarr").exists()


def test_draws_mean_and_none(small_manifest, tmp_path):
    kw = dict(splits=("val",), timesteps=(150,), blocks=(10,), pools=(1,), draws=3)
    diffprobe.extract_features(extract_config(small_manifest, tmp_path / "none.zarr", reduce="none", dtype="float32", **kw), progress=False)
    diffprobe.extract_features(extract_config(small_manifest, tmp_path / "mean.zarr", reduce="mean", dtype="float32", **kw), progress=False)
    with diffprobe.open_store(tmp_path / "none.zarr") as a, diffprobe.open_store(tmp_path / "mean.zarr") as b:
        xs = a.read("val", 150, 10, 1)
        assert xs.shape == (50, 3, 128, 1, 1)
        assert not np.array_equal(xs[:, 0], xs[:, 1])  # independent draws
        np.testing.assert_allclose(xs.mean(axis=1), b.read("val", 150, 10, 1), rtol=1e-5, atol=1e-6)


def test_hdf5_store_end_to_end(small_manifest, small_store, tmp_path):
    out = tmp_path / "s.h5"
    diffprobe.extract_features(extract_config(small_manifest, out, unit_size=32, splits=("val",)), progress=False)
    with diffprobe.open_store(out) as a, diffprobe.open_store(small_store) as ref:
        assert a.format == "hdf5"
        for k in a.keys("val"):
            assert np.array_equal(a.read("val", k), ref.read("val", k))
    summary = diffprobe.extract_features(extract_config(small_manifest, out, unit_size=32, splits=("val",)), progress=False)
    assert summary.units_run == 0


_CHILD = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, {root!r})
    import diffprobe.store.progress as progress
    from tests.helpers import extract_config
    import diffprobe
    real = progress.write_unit
    def slow(store, buf):  # give the parent time to kill us between units
        n = real(store, buf)
        time.sleep(0.3)
        return n
    progress.write_unit = slow
    diffprobe.extract_features(extract_config({manifest!r}, {out!r}, unit_size=8, splits=("val",), timesteps=(150,)), progress=False)
    """
)


@pytest.mark.parametrize("sig", [signal.SIGKILL, pytest.param(signal.SIGTERM, marks=pytest.mark.slow)])  # SIGTERM: also test_crashes
def test_killed_run_resumes_to_identical_arrays(small_manifest, small_store, tmp_path, sig):
    out = tmp_path / "killed.zarr"
    code = _CHILD.format(root=str(Path(__file__).resolve().parents[3]), manifest=str(small_manifest), out=str(out))
    proc = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE)
    markers = out / "_progress" / "val"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if markers.is_dir() and len(list(markers.glob("unit-*.json"))) >= 2:
            break
        time.sleep(0.05)
    assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
    proc.send_signal(sig)
    proc.wait(timeout=60)
    assert proc.returncode != 0
    with diffprobe.open_store(out) as s:  # readable and consistent after the kill
        done = len(s.markers("val"))
        assert 2 <= done < len(s.units("val")) and not s.is_complete()
    summary = diffprobe.extract_features(extract_config(small_manifest, out, unit_size=8, splits=("val",), timesteps=(150,)), progress=False)
    assert summary.units_skipped == done
    with diffprobe.open_store(out) as a, diffprobe.open_store(small_store) as ref:
        for k in a.keys("val"):
            assert a.read("val", k).tobytes() == ref.read("val", k).tobytes()


def test_compile_falls_back_to_eager_with_a_log_line(fmnist_backbone, monkeypatch, caplog):
    from diffprobe.extract.compute import FeatureComputer
    from diffprobe.extract.compute_spec import ComputeSpec
    from diffprobe.store.layout import FeatureKey

    def broken_compile(fn, **kw):
        def call(*a, **k):
            raise RuntimeError("no C++ compiler found")

        return call

    monkeypatch.setattr(torch, "compile", broken_compile)
    keys = [FeatureKey(150, 13, 2)]
    x = torch.rand(4, 3, 32, 32) * 2 - 1
    eager = FeatureComputer(fmnist_backbone, torch.device("cpu"), ComputeSpec(0, 1, "mean", "fp32", "float32", 4))
    comp = FeatureComputer(fmnist_backbone, torch.device("cpu"), ComputeSpec(0, 1, "mean", "fp32", "float32", 4, compile=True))
    with caplog.at_level("WARNING"):
        out = comp.compute(x, list("abcd"), keys)
    assert "torch.compile failed (RuntimeError: no C++ compiler found); running eagerly" in caplog.text
    assert np.array_equal(out[keys[0]], eager.compute(x, list("abcd"), keys)[keys[0]])
    assert np.array_equal(comp.compute(x, list("abcd"), keys)[keys[0]], out[keys[0]])  # stays eager
    assert comp.provenance == {"device": "cpu", "compiled": False} and eager.provenance == {"device": "cpu"}


def test_eager_fallback_in_a_compiled_store_is_recorded(small_manifest, tmp_path, monkeypatch):
    """Each unit's marker says where and how it was computed; verify notes units that ran eagerly
    in a store made with --compile (their values differ in rounding)."""
    from click.testing import CliRunner

    from diffprobe.cli import main

    def broken_compile(fn, **kw):
        raise RuntimeError("no C++ compiler found")

    monkeypatch.setattr(torch, "compile", broken_compile)
    out = tmp_path / "c.zarr"
    diffprobe.extract_features(extract_config(small_manifest, out, unit_size=32, splits=("val",), timesteps=(150,), blocks=(13,), pools=(2,), compile=True), progress=False)
    with diffprobe.open_store(out) as s:
        assert all(m["compute"] == {"device": "cpu", "compiled": False} for m in s.markers("val").values())
    r = CliRunner().invoke(main, ["store", "verify", str(out)])
    assert r.exit_code == 0, r.output
    assert "note: val: 2 of 2 units ran eagerly although the store was made with --compile" in r.output
    r = CliRunner().invoke(main, ["store", "info", str(out)])
    assert "units computed on cpu (2)" in r.output


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("g++") is None and shutil.which("c++") is None, reason="torch.compile on CPU needs a C++ compiler")
def test_compile_really_compiles_and_matches_eager(caplog):
    """--compile must compile the forward, not quietly fall back: nothing outside the forward (block
    names, the meta-device block table) may end up in the traced function."""
    from diffprobe.extract.compute import FeatureComputer
    from diffprobe.extract.compute_spec import ComputeSpec
    from diffprobe.store.layout import FeatureKey

    bb = diffprobe.load_backbone("adm-32-fmnist", FMNIST.parent / "adm32_fmnist_ema.pt")  # fresh: block table not cached
    keys = [FeatureKey(150, 10, 1), FeatureKey(150, 13, 2), FeatureKey(50, 13, 2)]
    x = torch.rand(4, 3, 32, 32) * 2 - 1
    eager = FeatureComputer(bb, torch.device("cpu"), ComputeSpec(0, 1, "mean", "fp32", "float32", 4, fuse=2)).compute(x, list("abcd"), keys)
    comp = FeatureComputer(bb, torch.device("cpu"), ComputeSpec(0, 1, "mean", "fp32", "float32", 4, compile=True, fuse=2))
    with caplog.at_level("INFO", logger="diffprobe"):
        out = comp.compute(x, list("abcd"), keys)
    assert "torch.compile: compiled the forward pass" in caplog.text and "running eagerly" not in caplog.text
    for k in keys:
        np.testing.assert_allclose(out[k], eager[k], rtol=1e-4, atol=1e-5)


@pytest.mark.gpu
def test_gpu_bf16_features_close_to_fp32(fmnist_backbone):
    from diffprobe.extract.compute import FeatureComputer
    from diffprobe.extract.compute_spec import ComputeSpec
    from diffprobe.store.layout import FeatureKey

    bb = diffprobe.load_backbone("adm-32-fmnist", FMNIST.parent / "adm32_fmnist_ema.pt", device="cuda")
    keys = [FeatureKey(150, 10, 1), FeatureKey(150, 13, 2)]
    x = torch.rand(64, 3, 32, 32) * 2 - 1
    ids = [str(i) for i in range(64)]
    ref = FeatureComputer(fmnist_backbone, torch.device("cpu"), ComputeSpec(0, 1, "mean", "fp32", "float32", 64)).compute(x, ids, keys)
    # fp32 on a GPU: PyTorch lets cuDNN use TF32 for convolutions by default (10-bit mantissa)
    for prec, tol in (("fp32", 1e-2), ("bf16", 5e-2), ("fp16", 1e-2)):
        got = FeatureComputer(bb, torch.device("cuda"), ComputeSpec(0, 1, "mean", prec, "float32", 64)).compute(x, ids, keys)
        for k in keys:
            rel = np.abs(got[k] - ref[k]).max() / np.abs(ref[k]).max()
            assert rel < tol, (prec, k, rel)
