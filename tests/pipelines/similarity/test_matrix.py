"""Similarity matrices over row sources: streamed = in-memory for every metric (several chunks and
tiles), the registry, cka delegation, NaN rows, memory caps, devices."""

from __future__ import annotations

import logging

import dask.array as da
import numpy as np
import pytest
import torch

from diffprobe.errors import ConfigError
from diffprobe.pipelines.cka.config import CKAConfig
from diffprobe.pipelines.cka.matrix import cka_matrix
from diffprobe.pipelines.cka.source import Source
from diffprobe.pipelines.similarity import METRICS, SimilarityConfig, similarity, similarity_matrix
from diffprobe.pipelines.similarity.knn_stream import neighbour_tables
from diffprobe.pipelines.similarity.math import neighbour_table
from diffprobe.pipelines.similarity.rsa_stream import rsa_bytes
from tests.pipelines.similarity import reference as ref

NAMES = ["cka", "mutual-knn", "cknna", "cycle-knn", "svcca", "pwcca", "procrustes", "rsa"]
REFERENCE = {
    "mutual-knn": lambda x, y, c: ref.mutual_knn(x, y, c.k, c.neighbours), "cknna": lambda x, y, c: ref.cknna(x, y, c.k, c.neighbours),
    "cycle-knn": lambda x, y, c: ref.cycle_knn(x, y, c.k, c.neighbours), "svcca": lambda x, y, c: ref.svcca(x, y, c.variance),
    "pwcca": lambda x, y, c: ref.pwcca(x, y), "procrustes": lambda x, y, c: ref.procrustes(x, y),
    "rsa": lambda x, y, c: ref.rsa(x, y, c.rdm),
}  # fmt: skip
SMALL = SimilarityConfig(k=6, chunk_rows=13, tile_rows=11)  # several read chunks and N×N tiles


def make_arrays(n: int = 120, dims=(7, 5, 9), seed: int = 0, dtype=np.float32) -> list[np.ndarray]:
    """Related (N, C, 1, 1) features far from zero, like pooled U-Net blocks."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n, 6))
    out = []
    for i, d in enumerate(dims):
        x = np.tanh(base @ rng.normal(size=(6, d))) + 0.4 * rng.normal(size=(n, d)) + 10.0 * (i + 1)
        out.append(x.astype(dtype).reshape(n, d, 1, 1))
    return out


def sources(arrays, wrap=lambda a: a) -> list[Source]:
    return [Source.of(f"k{i}", wrap(a)) for i, a in enumerate(arrays)]


def flat(a: np.ndarray) -> np.ndarray:
    return a.reshape(a.shape[0], -1).astype(np.float64)


def test_registry_names_and_unknown_metric():
    assert METRICS.names() == NAMES
    with pytest.raises(ConfigError, match=r"unknown similarity metric 'cnka'; valid: cka, mutual-knn, .*did you mean 'cka'"):
        similarity_matrix(sources(make_arrays()), None, "cnka")


@pytest.mark.parametrize("metric", NAMES[1:])
def test_streamed_equals_in_memory_and_the_papers_formula(metric):
    arrays = make_arrays()
    got = similarity_matrix(sources(arrays), None, metric, SMALL)
    dense = np.array([[similarity(a, b, metric, SMALL) for b in arrays] for a in arrays])
    np.testing.assert_allclose(got.values, dense, rtol=0, atol=1e-9)
    x, y = flat(arrays[0]), flat(arrays[2])
    assert got.values[0, 2] == pytest.approx(REFERENCE[metric](x, y, SMALL), abs=1e-9)
    assert got.row_labels == got.col_labels == ["k0", "k1", "k2"] and got.n_items == 120
    assert got.facts["metric"] == metric and got.facts["device"] == "cpu"
    if metric != "cycle-knn":  # an item need not be a neighbour of its own neighbours
        np.testing.assert_allclose(np.diag(got.values), 0.0 if METRICS.get(metric).distance else 1.0, rtol=0, atol=1e-9)


@pytest.mark.parametrize("metric", NAMES)
def test_rows_against_cols_from_lazy_dask_arrays(metric):
    arrays = make_arrays(n=90, seed=1)
    lazy = sources(arrays, lambda a: da.from_array(a, chunks=(16, -1, -1, -1)))
    got = similarity_matrix(lazy[:1], lazy[1:], metric, SMALL)
    assert got.values.shape == (1, 2) and got.row_labels == ["k0"] and got.col_labels == ["k1", "k2"]
    for j, b in enumerate(arrays[1:]):
        assert got.values[0, j] == pytest.approx(similarity(arrays[0], b, metric, SMALL), abs=1e-9)


@pytest.mark.parametrize("metric", ["pwcca", "cycle-knn"])
def test_asymmetric_metrics_fill_both_triangles_in_order(metric):
    arrays = make_arrays(seed=2)
    got = similarity_matrix(sources(arrays), None, metric, SMALL)
    for a in range(3):
        for b in range(3):
            assert got.values[a, b] == pytest.approx(similarity(arrays[a], arrays[b], metric, SMALL), abs=1e-9)
    assert not np.allclose(got.values, got.values.T)


@pytest.mark.parametrize("metric", NAMES)
def test_inputs_are_never_modified(metric):
    """float64 inputs reach the passes without a copy; the passes shift and normalise their own copies."""
    arrays = [flat(a) for a in make_arrays(n=60, seed=7)]
    kept = [a.copy() for a in arrays]
    similarity_matrix(sources(arrays), None, metric, SMALL)
    tensors = [torch.from_numpy(a) for a in arrays]
    similarity(tensors[0], tensors[1], metric, SimilarityConfig(k=6, neighbours="cosine", rdm="correlation"))
    assert all(np.array_equal(a, b) for a, b in zip(arrays, kept))


@pytest.mark.parametrize("neighbours", ["cosine", "euclidean"])
def test_streamed_neighbour_sets_equal_the_dense_ones_exactly(neighbours):
    arrays = make_arrays(n=100, seed=3)
    cfg = SimilarityConfig(k=8, neighbours=neighbours, chunk_rows=9, tile_rows=7)
    tables, facts = neighbour_tables(sources(arrays), [0, 1, 2], cfg, torch.device("cpu"))
    assert facts["tile_rows"] == 7 and facts["passes"] == 3
    for i, a in enumerate(arrays):
        dense = neighbour_table(torch.from_numpy(flat(a)), 8, neighbours)
        assert torch.equal(tables[i].index, dense.index)
        assert [set(r) for r in dense.index.tolist()] == ref.knn_sets(flat(a), 8, neighbours)


def test_tiles_from_max_memory_give_the_same_values():
    arrays = make_arrays(n=600, seed=4)
    for metric, budget in (("cknna", 2**20), ("rsa", 2**23)):
        small = similarity_matrix(sources(arrays), None, metric, SimilarityConfig(k=6, max_memory=budget))
        big = similarity_matrix(sources(arrays), None, metric, SimilarityConfig(k=6))
        assert small.facts["tile_rows"] < 600 == big.facts["tile_rows"]
        np.testing.assert_allclose(small.values, big.values, rtol=0, atol=1e-9)
    wide = make_arrays(n=600, dims=(300,), seed=4)
    with pytest.raises(ConfigError, match=r"a k-NN metric over 600 items holds 1.4 MiB .*raise max_memory"):
        similarity_matrix(sources(wide), None, "mutual-knn", SimilarityConfig(max_memory=2**20))


def test_cka_delegates_to_cka_matrix_unchanged():
    arrays = make_arrays()
    got = similarity_matrix(sources(arrays), None, "cka", SimilarityConfig(chunk_rows=13))
    want = cka_matrix(sources(arrays), None, CKAConfig(chunk_rows=13))
    np.testing.assert_array_equal(got.values, want.values)
    assert got.facts["metric"] == "cka" and got.facts["method"] == want.facts["method"]
    unbiased = SimilarityConfig(cka=CKAConfig(estimator="unbiased", method="gram"))
    assert similarity_matrix(sources(arrays), None, "cka", unbiased).values[0, 1] == pytest.approx(
        similarity(arrays[0], arrays[1], "cka", unbiased), abs=1e-12)  # fmt: skip


@pytest.mark.parametrize("metric", NAMES[1:])
def test_nan_rows_are_excluded_from_every_cell(metric, caplog):
    arrays = make_arrays(n=100, seed=5)
    bad = np.array([3, 50, 77])
    arrays[1][bad, 0] = np.nan
    with caplog.at_level(logging.WARNING):
        got = similarity_matrix(sources(arrays), None, metric, SMALL)
    keep = np.setdiff1d(np.arange(100), bad)
    assert got.facts["n_excluded"] == 3 and got.n_items == 97 and "k1 has NaN/inf rows" in caplog.text
    assert got.values[0, 2] == pytest.approx(similarity(arrays[0][keep], arrays[2][keep], metric, SMALL), abs=1e-9)


def test_exact_rsa_beyond_max_memory_is_refused_and_rsa_sample_estimates_it():
    assert rsa_bytes(10_000, 2048, 2) == pytest.approx(1.2e9, rel=0.01)
    assert rsa_bytes(50_000, 2048, 2) == pytest.approx(30e9, rel=0.01)
    arrays = make_arrays(n=600, seed=6)
    with pytest.raises(ConfigError, match=r"exact RSA over 600 items needs ~.*179700 dissimilarities.*set rsa_sample"):
        similarity_matrix(sources(arrays), None, "rsa", SimilarityConfig(max_memory=2**20))
    got = similarity_matrix(sources(arrays), None, "rsa", SimilarityConfig(max_memory=2**20, rsa_sample=200, seed=3))
    pick = np.sort(np.random.default_rng(3).choice(600, 200, replace=False))
    assert got.facts["sampled"] and got.facts["items_used"] == 200
    assert got.values[0, 1] == pytest.approx(similarity(arrays[0][pick], arrays[1][pick], "rsa"), abs=1e-12)


def test_cca_refusal_reaches_the_matrix_with_the_arrays_names():
    wide = [np.random.default_rng(i).normal(size=(30, 40)) for i in range(2)]
    with pytest.raises(Exception, match="degenerate.*ridge > 0"):
        similarity_matrix(sources(wide), None, "svcca", SimilarityConfig(variance=1.0))
    ok = similarity_matrix(sources(wide), None, "svcca", SimilarityConfig(variance=1.0, ridge=0.1, chunk_rows=7))
    assert ok.values[0, 1] == pytest.approx(similarity(wide[0], wide[1], "svcca", SimilarityConfig(variance=1.0, ridge=0.1)), abs=1e-9)
    const = [np.ones((30, 4)), wide[0]]
    with pytest.raises(Exception, match="k0 is constant across all 30 items"):
        similarity_matrix(sources(const), None, "procrustes")


def test_bad_settings_are_refused_at_the_boundary():
    for bad in ({"k": 0}, {"neighbours": "manhattan"}, {"variance": 0.0}, {"ridge": -1.0}, {"rdm": "cosine"},
                {"rsa_sample": 2}, {"max_memory": 10}, {"tile_rows": 0}):  # fmt: skip
        with pytest.raises(ConfigError, match="expected"):
            SimilarityConfig(**bad)
    with pytest.raises(ConfigError, match="same items"):
        similarity_matrix(sources([np.ones((10, 2)), np.ones((11, 2))]), None, "svcca")
    with pytest.raises(ConfigError, match="at least one array"):
        similarity_matrix([], None, "rsa")


def test_missing_gpu_is_an_error_that_says_use_cpu():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: CUDA requests are valid here")
    with pytest.raises(ConfigError, match="CUDA is not available here; use --device cpu"):
        similarity_matrix(sources(make_arrays()), None, "mutual-knn", SimilarityConfig(device="cuda"))


@pytest.mark.gpu
@pytest.mark.parametrize("metric", NAMES)
def test_gpu_equals_cpu(metric):
    arrays = make_arrays(n=400, dims=(64, 48, 32))
    cpu = similarity_matrix(sources(arrays), None, metric, SimilarityConfig(k=10, chunk_rows=97, tile_rows=61))
    gpu = similarity_matrix(sources(arrays), None, metric, SimilarityConfig(k=10, chunk_rows=97, tile_rows=61, device="cuda"))
    assert gpu.facts["device"].startswith("cuda")
    np.testing.assert_allclose(gpu.values, cpu.values, rtol=0, atol=1e-9)
