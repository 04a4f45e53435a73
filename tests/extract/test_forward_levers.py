"""The forward's levers beyond torch.compile: CUDA graphs, channels-last, the fused norm kernel.

On a CPU: settings are checked, recorded in the store's identity only when not the default, and
channels-last and the Triton kernel (in Triton's interpreter) compute the values of the default
path. On a GPU: CUDA graphs write the very bytes of the compiled forward, and the Triton kernel,
compiled, stays within bf16 rounding of torch's ops.
"""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import diffprobe
from diffprobe.cli import main
from diffprobe.errors import ConfigError, StoreError
from diffprobe.extract.compute import FeatureComputer
from diffprobe.extract.compute_spec import ComputeSpec
from diffprobe.pipelines.extraction.prepare import identity_diff
from diffprobe.store.layout import FeatureKey
from tests.helpers import FMNIST_CKPT, extract_config, read_all

CPU = torch.device("cpu")
KEYS = [FeatureKey(t, b, p) for t in (50, 150, 250) for b in (7, 13) for p in (1, 2, None)]


def _batch(n: int = 4) -> tuple[torch.Tensor, list[str]]:
    g = torch.Generator().manual_seed(5)
    return torch.rand(n, 3, 32, 32, generator=g) * 2 - 1, [f"img{i}" for i in range(n)]


def _backbone(device: str = "cpu") -> diffprobe.Backbone:
    """A backbone of the test's own: the levers change its layout and kernels in place."""
    return diffprobe.load_backbone("adm-32-fmnist", FMNIST_CKPT, device=device)


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b).max() / np.abs(b).max())


def test_settings_are_checked():
    with pytest.raises(ConfigError, match="cuda_graphs replays the compiled forward: add --compile"):
        extract_config("d", "o", cuda_graphs=True)
    with pytest.raises(ConfigError, match="unknown norm kernel 'apex'; valid: torch, triton"):
        extract_config("d", "o", norm_kernel="apex")
    r = CliRunner().invoke(main, ["extract", "d", "-m", "adm-32-fmnist", "--t", "50", "--blocks", "13", "-o", "o", "--cuda-graphs"])
    assert r.exit_code != 0 and "add --compile" in r.output


def test_identity_names_the_layout_and_kernel_only_when_not_the_default():
    spec = ComputeSpec(0, 1, "mean", "bf16", "float16", 64, compile=True)
    assert "channels_last" not in spec.identity() and "norm_kernel" not in spec.identity()
    fast = ComputeSpec(0, 1, "mean", "bf16", "float16", 64, compile=True, cuda_graphs=True, channels_last=True, norm_kernel="triton")
    assert {k: v for k, v in fast.identity().items() if k not in spec.identity()} == {"channels_last": True, "norm_kernel": "triton"}
    assert fast.identity()["compile"] is True and "cuda_graphs" not in fast.identity()  # the same kernels, replayed
    old = {"seed": 0, "precision": "bf16"}  # a store made before these settings existed
    assert identity_diff(old, {"seed": 0, "precision": "bf16", "channels_last": False, "norm_kernel": "torch"}) == []
    assert identity_diff(old, {"seed": 0, "precision": "bf16", "channels_last": True}) == ["channels_last: store has False, this run True"]


def test_channels_last_computes_the_default_values_and_is_undone_by_the_next_computer():
    bb = _backbone()
    x, ids = _batch()
    spec = ComputeSpec(0, 1, "mean", "fp32", "float32", 4, fuse=2)
    ref = FeatureComputer(bb, CPU, spec).compute(x, ids, KEYS)
    got = FeatureComputer(bb, CPU, ComputeSpec(0, 1, "mean", "fp32", "float32", 4, fuse=2, channels_last=True)).compute(x, ids, KEYS)
    conv = bb.net.input_blocks[0][0].weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    for k in KEYS:
        assert got[k].shape == ref[k].shape and got[k].flags.c_contiguous
        assert _rel(got[k], ref[k]) < 1e-5, k
    again = FeatureComputer(bb, CPU, spec).compute(x, ids, KEYS)
    assert bb.net.input_blocks[0][0].weight.is_contiguous()
    assert all(again[k].tobytes() == ref[k].tobytes() for k in KEYS)


def test_triton_norm_kernel_through_the_whole_model():
    """Every GroupNorm of the U-Net through the Triton kernel (interpreted on the CPU)."""
    pytest.importorskip("triton", reason="the Triton norm kernel needs triton (part of CUDA builds of torch)")
    bb = _backbone()
    x, ids = _batch(2)
    keys = [FeatureKey(150, b, p) for b in (7, 13) for p in (2, None)]
    ref = FeatureComputer(bb, CPU, ComputeSpec(0, 1, "mean", "fp32", "float32", 2)).compute(x, ids, keys)
    got = FeatureComputer(bb, CPU, ComputeSpec(0, 1, "mean", "fp32", "float32", 2, norm_kernel="triton")).compute(x, ids, keys)
    kernels = {m.kernel for m in bb.net.modules() if hasattr(m, "kernel")}
    assert kernels == {"triton"}
    for k in keys:
        assert _rel(got[k], ref[k]) < 1e-4, k


def test_cuda_graphs_without_cuda_are_said_and_not_recorded(caplog):
    with caplog.at_level(logging.WARNING, logger="diffprobe"):
        c = FeatureComputer(_backbone(), CPU, ComputeSpec(0, 1, "mean", "fp32", "float32", 4, cuda_graphs=True))
    assert "CUDA graphs need a CUDA device" in caplog.text
    assert c.provenance["cuda_graphs"] is False


def test_store_records_channels_last_and_refuses_to_mix_layouts(small_manifest, tmp_path):
    out = tmp_path / "cl.zarr"
    kw = dict(unit_size=32, splits=("val",), timesteps=(50,), blocks=(13,), pools=(2,))
    diffprobe.extract_features(extract_config(small_manifest, out, channels_last=True, **kw), progress=False)
    with diffprobe.open_store(out) as s:
        assert s.attrs["identity"]["channels_last"] is True
    before = read_all(out)
    with pytest.raises(StoreError, match="channels_last: store has True, this run False"):
        diffprobe.extract_features(extract_config(small_manifest, out, **{**kw, "timesteps": (150,)}), progress=False)
    assert all(np.array_equal(read_all(out)[k], v) for k, v in before.items())


def _gpu_compute(bb, spec: ComputeSpec, batches: int = 2) -> list[dict]:
    """Several launches in flight, as extraction pipelines them (results taken one launch late)."""
    cuda = torch.device("cuda")
    c = FeatureComputer(bb, cuda, spec)
    pending, out = [], []
    for i in range(batches):
        x, ids = _batch(8)
        pending.append(c.launch(x + i * 0.1, ids, KEYS))
        if len(pending) > 1:
            out.append(pending.pop(0).result())
    out += [p.result() for p in pending]
    assert not spec.compile or c.provenance["compiled"] is True, c.provenance
    return out


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["bf16", "fp32"])
def test_gpu_cuda_graphs_write_the_bytes_of_the_compiled_forward(precision):
    """Two forwards per launch (fuse 2 of 3 timesteps) and launches in flight: a graph replay must
    never overwrite outputs still in use (fp32 outputs are the graph's own buffers)."""
    bb = _backbone("cuda")
    spec = ComputeSpec(0, 1, "mean", precision, "float32", 8, compile=True, fuse=2)
    plain = _gpu_compute(bb, spec)
    graphs = _gpu_compute(bb, replace(spec, cuda_graphs=True))
    for a, b in zip(plain, graphs, strict=True):
        for k in KEYS:
            assert a[k].tobytes() == b[k].tobytes(), k


@pytest.mark.gpu
def test_gpu_triton_norm_kernel_and_channels_last_stay_within_bf16_rounding():
    bb = _backbone("cuda")
    ref = _gpu_compute(bb, ComputeSpec(0, 1, "mean", "fp32", "float32", 8, fuse=2))
    fast = _gpu_compute(bb, ComputeSpec(0, 1, "mean", "bf16", "float32", 8, compile=True, fuse=2, cuda_graphs=True,
                                        channels_last=True, norm_kernel="triton"))  # fmt: skip
    exact = _gpu_compute(bb, ComputeSpec(0, 1, "mean", "fp32", "float32", 8, fuse=2, norm_kernel="triton"))
    for r, f, e in zip(ref, fast, exact, strict=True):
        for k in KEYS:
            assert _rel(f[k], r[k]) < 5e-2, k  # bf16 against fp32, as the fused-timestep test allows
            assert _rel(e[k], r[k]) < 1e-4, k  # the kernel itself in fp32
