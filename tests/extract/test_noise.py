"""Schedules, q_sample and deterministic per-item noise."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import diffprobe
from diffprobe.errors import ConfigError


def test_linear_schedule_matches_paper_abar():
    abar = diffprobe.make_schedule("linear", 1000).alphas_cumprod
    # paper.md: abar at t = 10/50/90/150/300/500
    expected = {10: 0.9978, 50: 0.9700, 90: 0.9133, 150: 0.7859, 300: 0.3940, 500: 0.0778}
    for t, a in expected.items():
        assert abar[t] == pytest.approx(a, abs=6e-5)


def test_cosine_schedule_properties():
    s = diffprobe.make_schedule("cosine", 1000)
    abar = s.alphas_cumprod
    assert np.all(np.diff(abar) < 0) and 0.99 < abar[0] < 1 and abar[-1] < 1e-4
    assert s.betas.max() <= 0.999
    # closed form away from clipping: abar_t = f(t+1)/f(0), f(u) = cos²((u/T + s)/(1+s)·π/2)
    f = lambda u: np.cos((u / 1000 + 0.008) / 1.008 * np.pi / 2) ** 2  # noqa: E731
    assert abar[499] == pytest.approx(f(500) / f(0), rel=1e-9)


def test_unknown_schedule_lists_valid():
    with pytest.raises(ConfigError, match="cosine, linear"):
        diffprobe.make_schedule("sigmoid")


def test_q_sample_formula_and_bounds():
    s = diffprobe.make_schedule("linear")
    x0 = torch.rand(3, 3, 4, 4) * 2 - 1
    eps = torch.randn_like(x0)
    t = torch.tensor([0, 90, 999])
    xt = diffprobe.q_sample(x0, t, eps, s)
    abar = torch.tensor(s.alphas_cumprod[[0, 90, 999]], dtype=torch.float32).view(-1, 1, 1, 1)
    torch.testing.assert_close(xt, abar.sqrt() * x0 + (1 - abar).sqrt() * eps)
    torch.testing.assert_close(diffprobe.q_sample(x0, 90, eps, s)[1], xt[1])
    with pytest.raises(ConfigError, match=r"\[0, 999\]"):
        diffprobe.q_sample(x0, 1000, eps, s)


def test_noise_independent_of_batch_split():
    x0 = torch.zeros(6, 3, 8, 8)
    ids = [11, 12, 13, 14, 15, 16]
    whole = diffprobe.noise_like(x0, ids, 150, seed=3)
    parts = torch.cat([diffprobe.noise_like(x0[:2], ids[:2], 150, seed=3), diffprobe.noise_like(x0[2:], ids[2:], 150, seed=3)])
    assert torch.equal(whole, parts)
    # reordered batch: each item keeps its own noise
    rev = diffprobe.noise_like(x0, ids[::-1], 150, seed=3)
    assert torch.equal(rev.flip(0), whole)
    # any change of (seed, t, draw, id) changes the noise
    for kw in ({"t": 151, "seed": 3}, {"t": 150, "seed": 4}, {"t": 150, "seed": 3, "draw": 1}):
        assert not torch.equal(diffprobe.noise_like(x0, ids, **kw), whole)
    assert not torch.equal(whole[0], whole[1])


def test_noise_is_standard_normal_and_accepts_string_ids():
    x0 = torch.zeros(4, 3, 32, 32)
    e = diffprobe.noise_like(x0, ["a/1.png", "a/2.png", "b/1.png", "b/2.png"], [10, 20, 30, 40], seed=0)
    assert abs(e.mean().item()) < 0.05 and abs(e.std().item() - 1) < 0.05
    assert e.dtype == x0.dtype
    with pytest.raises(ValueError, match="3 item ids for a batch of 4"):
        diffprobe.noise_like(x0, [1, 2, 3], 10, seed=0)
