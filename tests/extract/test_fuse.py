"""Several (t, draw) passes in one forward: same values, deterministic bytes, auto settings on resume."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

import diffprobe
from diffprobe.errors import StoreError
from diffprobe.extract.compute import FeatureComputer
from diffprobe.extract.compute_spec import ComputeSpec, default_fuse
from diffprobe.pipelines.extraction.prepare import identity_diff
from diffprobe.store.layout import FeatureKey
from tests.helpers import extract_config, read_all

CPU = torch.device("cpu")
KEYS = [FeatureKey(t, b, p) for t in (50, 150, 250) for b in (7, 13) for p in (1, 2)]


def _batch(n: int = 6) -> tuple[torch.Tensor, list[str]]:
    g = torch.Generator().manual_seed(3)
    return torch.rand(n, 3, 32, 32, generator=g) * 2 - 1, [f"img{i}" for i in range(n)]


def _compute(bb, keys, fuse: int, draws: int = 1, reduce: str = "mean") -> dict:
    x, ids = _batch()
    spec = ComputeSpec(0, draws, reduce, "fp32", "float32", 8, fuse=fuse)
    return FeatureComputer(bb, CPU, spec).compute(x, ids, keys)


def test_fused_passes_match_separate_forwards(fmnist_backbone):
    """Fusing changes the forward's shape, so values agree to rounding, not bytes."""
    sep = _compute(fmnist_backbone, KEYS, fuse=1)
    for fuse in (2, 3):
        got = _compute(fmnist_backbone, KEYS, fuse=fuse)
        assert set(got) == set(KEYS)
        for k in KEYS:
            assert got[k].shape == sep[k].shape == (6, 128, k.pool, k.pool)
            np.testing.assert_allclose(got[k], sep[k], rtol=1e-4, atol=1e-5, err_msg=str(k))


def test_fused_bytes_do_not_depend_on_the_other_timesteps(fmnist_backbone):
    """With a fixed fuse, a pass's bytes are the same whichever passes share its forward (or a
    zero-filled slot does): extending a store with a timestep later writes what one run would."""
    together = _compute(fmnist_backbone, KEYS, fuse=2)  # forwards: (50, 150), (250, fill)
    for ts in ((250,), (150,), (250, 50), (150, 250, 50)):
        keys = [k for k in KEYS if k.t in ts]
        alone = _compute(fmnist_backbone, keys, fuse=2)
        for k in keys:
            assert alone[k].tobytes() == together[k].tobytes(), (ts, k)


def test_fused_draws(fmnist_backbone):
    keys = [FeatureKey(t, 13, 2) for t in (50, 150)]
    sep = _compute(fmnist_backbone, keys, fuse=1, draws=3, reduce="none")
    fused = _compute(fmnist_backbone, keys, fuse=4, draws=3, reduce="none")  # 6 passes: 4 + (2 + fill)
    for k in keys:
        assert fused[k].shape == (6, 3, 128, 2, 2)
        np.testing.assert_allclose(fused[k], sep[k], rtol=1e-4, atol=1e-5)
        assert not np.allclose(fused[k][:, 0], fused[k][:, 1])  # the draws are distinct noise


def test_default_fuse_only_fuses_where_it_pays():
    gpu = torch.device("cuda")  # a device object only; nothing runs on it
    assert default_fuse(10, 16, 32, CPU) == 1  # measured: 16 rows of 32×32 already fill the CPU
    assert default_fuse(10, 4, 32, CPU) == 4  # 4 images per forward: fusing 4 passes paid 1.13×
    assert default_fuse(10, 1, 256, CPU) == 1
    assert default_fuse(1, 64, 32, gpu) == 1
    assert default_fuse(4, 64, 256, gpu) == 1  # the 256 model fills the chip at 64 rows
    assert default_fuse(4, 16, 256, gpu) == 4
    assert default_fuse(10, 64, 32, gpu) == 10  # 32×32: up to 64 passes per forward
    assert default_fuse(100, 64, 32, gpu) == 50  # two balanced groups, not 64 + 36
    assert default_fuse(20, 64, 64, gpu) == 10  # 64×64: up to 16 passes → 2 groups of 10


def test_store_with_fusion_equals_one_run_and_extension(small_manifest, tmp_path):
    """A store extracted with fused timesteps in one run equals one grown a timestep at a time."""
    kw = dict(unit_size=32, splits=("val",), blocks=(13,), pools=(2,), fuse_timesteps=2)
    one = tmp_path / "one.zarr"
    diffprobe.extract_features(extract_config(small_manifest, one, timesteps=(50, 150, 250), **kw), progress=False)
    grown = tmp_path / "grown.zarr"
    diffprobe.extract_features(extract_config(small_manifest, grown, timesteps=(150,), **kw), progress=False)
    diffprobe.extract_features(extract_config(small_manifest, grown, timesteps=(250, 50), **kw), progress=False)
    a, b = read_all(one), read_all(grown)
    assert set(a) == set(b) and len(a) == 3
    assert all(a[k].tobytes() == b[k].tobytes() for k in a)
    with diffprobe.open_store(one) as s:
        assert s.attrs["identity"]["fuse_timesteps"] == 2


def test_auto_settings_follow_the_existing_store(small_manifest, tmp_path, caplog):
    """Left at auto, forward batch and fusion come from the store (resume works on any device);
    given explicitly and different, the run is refused."""
    out = tmp_path / "s.zarr"
    kw = dict(unit_size=32, splits=("val",), blocks=(13,), pools=(2,))
    diffprobe.extract_features(extract_config(small_manifest, out, timesteps=(150,), forward_batch=8, fuse_timesteps=3, **kw), progress=False)
    with caplog.at_level(logging.INFO, logger="diffprobe"):
        s = diffprobe.extract_features(extract_config(small_manifest, out, timesteps=(150, 50), **kw), progress=False)
    assert s.units_run == 2
    assert "forward_batch=8 taken from the existing store" in caplog.text
    assert "fuse_timesteps=3 taken from the existing store" in caplog.text
    before = read_all(out)
    with pytest.raises(StoreError, match="fuse_timesteps: store has 3, this run 1"):
        diffprobe.extract_features(extract_config(small_manifest, out, timesteps=(150,), fuse_timesteps=1, **kw), progress=False)
    assert all(np.array_equal(read_all(out)[k], v) for k, v in before.items())


def test_stores_without_fuse_field_are_unfused():
    old = {"seed": 0, "forward_batch": 16}
    assert identity_diff(old, {"seed": 0, "forward_batch": 16, "fuse_timesteps": 1}) == []
    assert identity_diff(old, {"seed": 0, "forward_batch": 16, "fuse_timesteps": 2}) == ["fuse_timesteps: store has 1, this run 2"]


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["bf16", "fp32"])
def test_gpu_fused_bytes_do_not_depend_on_the_other_timesteps(precision):
    from tests.helpers import FMNIST_CKPT

    bb = diffprobe.load_backbone("adm-32-fmnist", FMNIST_CKPT, device="cuda")
    x, ids = _batch(64)
    cuda = torch.device("cuda")

    def run(keys, fuse):
        return FeatureComputer(bb, cuda, ComputeSpec(0, 1, "mean", precision, "float32", 64, fuse=fuse)).compute(x, ids, keys)

    together = run(KEYS, 2)
    sep = run(KEYS, 1)
    for ts in ((250,), (150,), (150, 250, 50)):
        keys = [k for k in KEYS if k.t in ts]
        alone = run(keys, 2)
        for k in keys:
            assert alone[k].tobytes() == together[k].tobytes(), (ts, k)
    for k in KEYS:
        rel = np.abs(together[k] - sep[k]).max() / np.abs(sep[k]).max()
        assert rel < (5e-2 if precision == "bf16" else 1e-2), (k, rel)


@pytest.mark.gpu
def test_gpu_store_is_deterministic_and_resumable_on_cpu(small_manifest, tmp_path):
    """On CUDA with every setting at auto (bf16, 64 images per forward, fused timesteps): stored
    bytes do not depend on the decode batch size, and a CPU run can extend the store."""
    kw = dict(unit_size=32, splits=("val",), blocks=(13,), pools=(2,), device="cuda", timesteps=(50, 150))
    a, b = tmp_path / "a.zarr", tmp_path / "b.zarr"
    diffprobe.extract_features(extract_config(small_manifest, a, batch_size=16, **kw), progress=False)
    diffprobe.extract_features(extract_config(small_manifest, b, batch_size=5, **kw), progress=False)
    ra, rb = read_all(a), read_all(b)
    assert all(ra[k].tobytes() == rb[k].tobytes() for k in ra)
    with diffprobe.open_store(a) as s:
        ident = s.attrs["identity"]
    assert (ident["precision"], ident["forward_batch"], ident["fuse_timesteps"]) == ("bf16", 64, 2)
    s = diffprobe.extract_features(extract_config(small_manifest, a, **{**kw, "device": "cpu", "timesteps": (250,)}), progress=False)
    assert s.units_run == 2
