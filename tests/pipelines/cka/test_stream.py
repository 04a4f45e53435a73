"""CKA matrices over row sources: streamed = in-memory, multi-pass plans, minibatch, NaN rows, devices."""

from __future__ import annotations

import logging

import dask.array as da
import numpy as np
import pytest
import torch

from diffprobe.errors import ConfigError
from diffprobe.pipelines.cka.config import CKAConfig
from diffprobe.pipelines.cka.math import DegenerateInputError, cka, gram, hsic_matrix
from diffprobe.pipelines.cka.matrix import cka_matrix
from diffprobe.pipelines.cka.source import Source
from diffprobe.pipelines.cka.stream import plan_features
from diffprobe.sizes import parse_size


def make_arrays(n: int = 300, dims=(5, 9, 16, 3), seed: int = 0, dtype=np.float32) -> list[np.ndarray]:
    """Related (N, C, 1, 1)-shaped features far from zero, like pooled U-Net blocks."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n, 8))
    out = []
    for i, d in enumerate(dims):
        x = np.tanh(base @ rng.normal(size=(8, d))) + 0.4 * rng.normal(size=(n, d)) + 20.0 * i
        out.append(x.astype(dtype).reshape(n, d, 1, 1))
    return out


def reference(arrays, estimator="biased", kernel="linear") -> np.ndarray:
    """In-memory Gram form: every N×N Gram at once, HSIC by stacked centred Grams (cka_math)."""
    h = hsic_matrix([gram(a, kernel) for a in arrays], estimator).numpy()
    d = np.sqrt(np.diag(h))
    return h / d[:, None] / d[None, :]


def sources(arrays, rows=None, wrap=lambda a: a) -> list[Source]:
    return [Source.of(f"k{i}", wrap(a), rows) for i, a in enumerate(arrays)]


@pytest.mark.parametrize("estimator", ["biased", "unbiased"])
def test_streamed_equals_in_memory(estimator):
    arrays = make_arrays()
    ref = reference(arrays, estimator)
    assert ref[1, 2] == pytest.approx(cka(arrays[1], arrays[2], "linear", estimator), abs=1e-12)
    streamed = cka_matrix(sources(arrays), None, CKAConfig(estimator=estimator, method="features", chunk_rows=37))
    assert streamed.facts["method"] == "features" and streamed.facts["passes"] == 1
    np.testing.assert_allclose(streamed.values, ref, rtol=0, atol=1e-10)
    gram = cka_matrix(sources(arrays), None, CKAConfig(estimator=estimator, method="gram"))
    np.testing.assert_allclose(gram.values, ref, rtol=0, atol=1e-10)
    assert streamed.row_labels == streamed.col_labels == ["k0", "k1", "k2", "k3"] and streamed.n_items == 300


def test_multi_pass_plan_within_memory_equals_single_pass():
    arrays = make_arrays(n=120, dims=(200, 180, 150), seed=1)
    srcs = sources(arrays)
    plan = plan_features(srcs, [(a, b) for a in range(3) for b in range(a, 3)], 2**20)
    assert len(plan.passes) == 6  # three groups of one array each → 6 group pairs
    assert all(p.accumulator_bytes([200, 180, 150]) <= 2**20 // 2 for p in plan.passes)
    small = cka_matrix(srcs, None, CKAConfig(method="features", max_memory=2**20))
    big = cka_matrix(srcs, None, CKAConfig(method="features"))
    assert small.facts["passes"] == 6 and big.facts["passes"] == 1
    np.testing.assert_allclose(small.values, big.values, rtol=0, atol=1e-12)
    np.testing.assert_allclose(big.values, reference(arrays), rtol=0, atol=1e-10)


def test_rectangular_matrix_is_the_block_of_the_square_one():
    arrays = make_arrays()
    srcs = sources(arrays)
    full = reference(arrays, "unbiased")
    for method in ("features", "gram"):
        rect = cka_matrix(srcs[:1], srcs[1:], CKAConfig(estimator="unbiased", method=method, chunk_rows=64))
        assert rect.values.shape == (1, 3) and rect.col_labels == ["k1", "k2", "k3"]
        np.testing.assert_allclose(rect.values, full[:1, 1:], rtol=0, atol=1e-10)


def test_row_selection_and_order_and_dask_chunks():
    arrays = make_arrays(n=200)
    rows = np.random.default_rng(5).permutation(200)[:150]  # a reordered subset of the items
    expect = reference([a[rows] for a in arrays])
    for wrap in (lambda a: a, lambda a: da.from_array(a, chunks=(32, -1, -1, -1))):
        got = cka_matrix(sources(arrays, rows, wrap), None, CKAConfig(method="features", chunk_rows=40))
        np.testing.assert_allclose(got.values, expect, rtol=0, atol=1e-10)
    assert Source.of("x", da.from_array(arrays[0], chunks=(32, -1, -1, -1))).store_chunk == 32


def test_float16_sources_stream_like_their_float64_values():
    arrays = [a.astype(np.float16) for a in make_arrays()]
    got = cka_matrix(sources(arrays), None, CKAConfig(method="features", chunk_rows=50))
    np.testing.assert_allclose(got.values, reference([a.astype(np.float64) for a in arrays]), rtol=0, atol=1e-10)


def test_auto_method_choice():
    few_wide = make_arrays(n=40, dims=(64, 64))
    assert cka_matrix(sources(few_wide), None, CKAConfig()).facts["method"] == "gram"  # N < D: Grams are cheaper
    many_narrow = make_arrays(n=2000, dims=(4, 6))
    assert cka_matrix(sources(many_narrow), None, CKAConfig()).facts["method"] == "features"  # N ≫ D
    assert cka_matrix(sources(many_narrow), None, CKAConfig(kernel="rbf")).facts["method"] == "gram"


def test_minibatch_matrix_matches_full_unbiased_with_one_batch_and_converges():
    arrays = make_arrays(n=400)
    full = reference(arrays, "unbiased")
    one = cka_matrix(sources(arrays), None, CKAConfig(estimator="minibatch", batch_size=400))
    assert one.facts["method"] == "minibatch" and one.facts["batches"] == 1
    np.testing.assert_allclose(one.values, full, rtol=0, atol=1e-10)
    err = [np.abs(cka_matrix(sources(arrays), None, CKAConfig(estimator="minibatch", batch_size=b)).values - full).max()
           for b in (25, 200)]  # fmt: skip
    assert err[0] > err[1]
    rbf = cka_matrix(sources(arrays), None, CKAConfig(estimator="minibatch", kernel="rbf", batch_size=400))
    np.testing.assert_allclose(rbf.values, reference(arrays, "unbiased", "rbf"), rtol=0, atol=1e-10)


def test_minibatch_groups_when_memory_is_short():
    arrays = make_arrays(n=1500, dims=(128, 128))
    roomy = cka_matrix(sources(arrays), None, CKAConfig(estimator="minibatch", batch_size=100))
    tight = cka_matrix(sources(arrays), None, CKAConfig(estimator="minibatch", batch_size=100, max_memory=2**20))
    assert roomy.facts["passes"] == 1 and tight.facts["passes"] > 1
    np.testing.assert_allclose(tight.values, roomy.values, rtol=0, atol=1e-12)


def test_nan_rows_are_excluded_from_every_pair(caplog):
    arrays = make_arrays(n=200)
    arrays[2] = arrays[2].copy()
    bad = [3, 50, 51, 199]
    arrays[2][bad] = np.nan
    keep = np.setdiff1d(np.arange(200), bad)
    expect = reference([a[keep] for a in arrays])
    with caplog.at_level(logging.WARNING):
        got = cka_matrix(sources(arrays), None, CKAConfig(method="features", chunk_rows=30))
    assert got.facts["n_excluded"] == 4 and got.n_items == 196 and "k2 has NaN/inf rows" in caplog.text
    np.testing.assert_allclose(got.values, expect, rtol=0, atol=1e-10)


def test_constant_array_is_a_clear_error():
    arrays = make_arrays(n=50)
    arrays[1] = np.full_like(arrays[1], 3.0)
    for cfg in (CKAConfig(method="features"), CKAConfig(method="gram"), CKAConfig(estimator="minibatch", batch_size=10)):
        with pytest.raises(DegenerateInputError, match="k1"):
            cka_matrix(sources(arrays), None, cfg)


def test_plan_refuses_a_pair_that_cannot_fit():
    wide = [np.zeros((10, 600), np.float32), np.zeros((10, 600), np.float32)]
    with pytest.raises(ConfigError, match="needs .* more than max_memory .*--estimator minibatch"):
        plan_features(sources(wide), [(0, 1)], 2**20)


def test_config_errors_and_sizes():
    with pytest.raises(ConfigError, match="valid: biased, unbiased, minibatch"):
        CKAConfig(estimator="exact")
    with pytest.raises(ConfigError, match="linear CKA only"):
        CKAConfig(kernel="rbf", method="features")
    with pytest.raises(ConfigError, match="batch_size ≥ 4"):
        CKAConfig(batch_size=2)
    assert parse_size("2GiB") == 2 * 2**30 and parse_size("1.5G") == 1_500_000_000 and parse_size("4096") == 4096
    with pytest.raises(ConfigError, match="expected a size like 2GiB"):
        parse_size("lots")


def test_missing_gpu_is_an_error_that_says_use_cpu():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: CUDA requests are valid here")
    arrays = make_arrays(n=80)
    with pytest.raises(ConfigError, match="CUDA is not available here; use --device cpu"):
        cka_matrix(sources(arrays), None, CKAConfig(device="cuda", method="features"))
    got = cka_matrix(sources(arrays), None, CKAConfig(device="auto", method="features"))
    assert got.facts["device"] == "cpu"
    np.testing.assert_allclose(got.values, reference(arrays), rtol=0, atol=1e-10)


@pytest.mark.gpu
@pytest.mark.parametrize("estimator", ["biased", "unbiased", "minibatch"])
def test_gpu_equals_cpu(estimator):
    arrays = make_arrays(n=500)
    cfg = CKAConfig(estimator=estimator, method="features" if estimator != "minibatch" else "auto", batch_size=100)
    cpu = cka_matrix(sources(arrays), None, cfg)
    gpu = cka_matrix(sources(arrays), None, CKAConfig(**{**cfg.to_dict(), "device": "cuda"}))
    assert gpu.facts["device"].startswith("cuda")
    np.testing.assert_allclose(gpu.values, cpu.values, rtol=0, atol=1e-10)
