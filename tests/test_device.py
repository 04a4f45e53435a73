"""One device resolver for extraction, probes and CKA, with one documented behaviour."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diffprobe.device import autocast, resolve_device, resolve_precision
from diffprobe.errors import ConfigError

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present: CUDA requests are valid here")


def test_auto_and_explicit_names():
    assert resolve_device("auto") == resolve_device(None) == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ConfigError, match="expected a device, got 'tpu0'; valid: auto, cpu, cuda, cuda:K"):
        resolve_device("tpu0")


@no_cuda
def test_cuda_without_cuda_is_an_error_everywhere(tmp_path):
    """Extraction, probes and CKA all refuse it the same way, before any work."""
    import diffprobe
    from diffprobe.pipelines.cka.config import CKAConfig
    from diffprobe.pipelines.cka.matrix import cka_matrix
    from diffprobe.pipelines.cka.source import Source
    from diffprobe.probes import LogisticProbe
    from tests.helpers import FMNIST, extract_config

    expected = "CUDA is not available here; use --device cpu"
    with pytest.raises(ConfigError, match=expected):
        resolve_device("cuda:1")
    with pytest.raises(ConfigError, match=expected):
        diffprobe.extract_features(extract_config(FMNIST, tmp_path / "x.zarr", device="cuda"))
    assert not (tmp_path / "x.zarr").exists()
    X, y = np.random.default_rng(0).normal(size=(20, 4)).astype(np.float32), np.arange(20) % 2
    with pytest.raises(ConfigError, match=expected):
        LogisticProbe(C=1.0, device="cuda").fit(X, y)
    with pytest.raises(ConfigError, match=expected):
        cka_matrix([Source.of("a", X), Source.of("b", X[:, ::-1])], None, CKAConfig(device="cuda"))
    with pytest.raises(ConfigError, match=expected):
        diffprobe.load_backbone("adm-32-fmnist", device="cuda")


def test_precision_and_autocast():
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu) == "fp32"
    with pytest.raises(ConfigError, match="valid: auto, fp32, bf16, fp16"):
        resolve_precision("fp8", cpu)
    x = torch.ones(2, 2)
    with autocast("fp32", cpu):
        assert (x @ x).dtype == torch.float32
    with autocast("bf16", cpu):
        assert (x @ x).dtype == torch.bfloat16


def test_fp32_on_cuda_is_exact_and_deterministic_inside_the_block_only():
    """fp32 on CUDA turns TF32 off and cuDNN deterministic for the block, then restores what was set
    (the switches are plain settings, so this runs without a GPU)."""
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    before = (cudnn.deterministic, cudnn.benchmark, cudnn.allow_tf32, matmul.allow_tf32)
    cudnn.benchmark, cudnn.allow_tf32 = True, True
    try:
        with autocast("fp32", torch.device("cuda")):
            assert (cudnn.deterministic, cudnn.benchmark, cudnn.allow_tf32, matmul.allow_tf32) == (True, False, False, False)
        assert (cudnn.benchmark, cudnn.allow_tf32, cudnn.deterministic) == (True, True, before[0])
        with autocast("bf16", torch.device("cpu")), autocast("fp32", torch.device("cpu")):
            assert cudnn.benchmark  # the CPU and the half precisions leave cuDNN alone
    finally:
        cudnn.deterministic, cudnn.benchmark, cudnn.allow_tf32, matmul.allow_tf32 = before
