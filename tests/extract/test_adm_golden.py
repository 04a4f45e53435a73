"""Our ADM U-Net computes the same function as the official guided-diffusion code."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import diffprobe
from tests.helpers import DATA, golden


def _rel_err(a: torch.Tensor, ref: np.ndarray) -> float:
    r = torch.from_numpy(ref)
    return float((a - r).abs().max() / r.abs().max())


@pytest.mark.parametrize("model", ["adm32_fmnist", "adm64_mini_random"])
def test_every_block_and_output_match_official(model, request):
    bb = request.getfixturevalue("fmnist_backbone" if model == "adm32_fmnist" else "mini_backbone")
    g = golden(model)
    meta = json.loads((DATA / f"{model}_golden.json").read_text())
    x_t, t = torch.from_numpy(g["x_t"]), torch.from_numpy(g["t"])
    with torch.no_grad():
        out = bb(x_t, t)
        feats = bb.features(x_t, t, range(1, len(bb.blocks) + 1))
    assert _rel_err(out, g["model_output"]) <= 1e-4
    assert len(feats) == len(meta["blocks"])
    for n, f in feats.items():
        assert list(f.shape[1:]) == meta["blocks"][str(n)]
        assert _rel_err(F.adaptive_avg_pool2d(f, 4), g[f"block_{n:02d}_pool4"]) <= 1e-4, n
    unpooled = [k for k in g if k.startswith("block_") and not k.endswith("pool4")]
    assert unpooled
    for k in unpooled:
        assert _rel_err(feats[int(k.split("_")[1])], g[k]) <= 1e-4


@pytest.mark.parametrize("model", ["adm32_fmnist", "adm64_mini_random"])
def test_schedule_and_q_sample_match_official(model, request):
    bb = request.getfixturevalue("fmnist_backbone" if model == "adm32_fmnist" else "mini_backbone")
    g = golden(model)
    np.testing.assert_allclose(bb.schedule.alphas_cumprod, g["alphas_cumprod"], rtol=1e-12)
    x_t = diffprobe.q_sample(torch.from_numpy(g["x0"]), torch.from_numpy(g["t"]), torch.from_numpy(g["noise"]), bb.schedule)
    np.testing.assert_allclose(x_t.numpy(), g["x_t"], atol=1e-5)


def test_measured_blocks_match_golden_shapes(mini_backbone):
    meta = json.loads((DATA / "adm64_mini_random_golden.json").read_text())["blocks"]
    assert [[b.channels, b.height, b.width] for b in mini_backbone.blocks] == [meta[str(i)] for i in range(1, 38)]
    assert mini_backbone.blocks[18].path == "middle_block" and mini_backbone.blocks[18].stage == "middle"


def test_fp16_and_fp32_checkpoint_files_load_identically(tmp_path, mini_flags, mini_backbone):
    sd = torch.load(DATA / "adm64_mini_random.pt", weights_only=True)
    assert all(v.dtype == torch.float16 for v in sd.values())
    torch.save({k: v.float() for k, v in sd.items()}, tmp_path / "fp32.pt")
    bb32 = diffprobe.load_backbone("adm", tmp_path / "fp32.pt", **mini_flags)
    for (k, a), (_, b) in zip(bb32.state_dict().items(), mini_backbone.state_dict().items()):
        assert torch.equal(a, b), k
    assert bb32.checkpoint_sha256 != mini_backbone.checkpoint_sha256
