"""RSA: Spearman of RDM triangles against scipy, exact tied ranks, invariances, refusals."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.distance import pdist
from scipy.stats import rankdata

from diffprobe.pipelines.similarity.config import RDM_NAMES
from diffprobe.pipelines.similarity.math import (
    DISSIMILARITIES,
    UndefinedSimilarityError,
    doubled_ranks,
    rsa,
    spearman_from_ranks,
    upper_triangle,
)
from tests.pipelines.similarity import reference as ref
from tests.pipelines.similarity.reference import orthogonal, related

PROPS = settings(max_examples=10, deadline=None)


def test_rdm_names_match_the_registry():
    assert tuple(DISSIMILARITIES.names()) == RDM_NAMES


@pytest.mark.parametrize("rdm", RDM_NAMES)
def test_matches_spearman_of_the_rdm_triangles(rdm):
    x, y = related(90, 11, 6, seed=1, shift=2.0)
    assert rsa(x, y, rdm) == pytest.approx(ref.rsa(x, y, rdm), abs=1e-12)


@pytest.mark.parametrize("rdm", RDM_NAMES)
def test_upper_triangle_is_pdist_order_for_any_tiling(rdm):
    x, _ = related(40, 5, 3, seed=2)
    expect = pdist(x, rdm)
    for tile in (None, 1, 7, 39):
        np.testing.assert_allclose(upper_triangle(torch.from_numpy(x), rdm, tile), expect, rtol=0, atol=1e-12)


@pytest.mark.parametrize("chunk", [3, 5, 1 << 22])
def test_doubled_ranks_are_twice_scipys_average_ranks_with_ties_across_chunks(chunk):
    v = np.random.default_rng(0).integers(0, 6, size=41).astype(np.float64)  # many ties, groups spanning chunks
    r = doubled_ranks(v, chunk)
    assert r.dtype == np.uint32
    np.testing.assert_array_equal(r, (2 * rankdata(v)).astype(np.int64))
    w = np.random.default_rng(1).normal(size=50)
    np.testing.assert_array_equal(doubled_ranks(w, chunk), 2 * rankdata(w))


def test_spearman_from_ranks_in_chunks():
    a, b = np.random.default_rng(2).normal(size=(2, 97))
    b = np.round(a + b, 1)  # ties in one of them
    got = spearman_from_ranks(doubled_ranks(a), doubled_ranks(b), chunk=10)
    assert got == pytest.approx(float(np.corrcoef(rankdata(a), rankdata(b))[0, 1]), abs=1e-13)


@PROPS
@given(st.integers(0, 10_000), st.sampled_from(RDM_NAMES))
def test_invariant_to_permuting_the_items_of_both_alike(seed, rdm):
    x, y = related(35, 6, 4, seed=seed)
    p = np.random.default_rng(seed).permutation(35)
    assert rsa(x[p], y[p], rdm) == pytest.approx(rsa(x, y, rdm), abs=1e-12)


@PROPS
@given(st.integers(0, 10_000), st.floats(1e-3, 1e3), st.floats(-50, 50))
def test_euclidean_rdms_are_invariant_to_rotation_scaling_translation(seed, scale, shift):
    x, y = related(35, 6, 4, seed=seed)
    moved = scale * x @ orthogonal(6, seed) + shift
    assert rsa(moved, y, "euclidean") == pytest.approx(rsa(x, y, "euclidean"), abs=1e-9)


def test_correlation_rdms_are_invariant_to_per_item_shift_and_scale():
    x, y = related(40, 6, 4, seed=3)
    rng = np.random.default_rng(3)
    moved = x * rng.uniform(0.1, 10, size=(40, 1)) + rng.normal(size=(40, 1))
    assert rsa(moved, y) == pytest.approx(rsa(x, y), abs=1e-9)


def test_self_similarity_symmetry_and_a_permutation_of_one_side():
    x, y = related(50, 6, 4, seed=4)
    assert rsa(x, x) == pytest.approx(1.0, abs=1e-12) and rsa(x, y) == pytest.approx(rsa(y, x), abs=1e-12)
    assert abs(rsa(x, y[np.random.default_rng(0).permutation(50)])) < 0.2  # pairing broken: ~0


def test_degenerate_inputs_are_refused_with_what_to_do():
    x, y = related(30, 4, 3)
    flat = x.copy()
    flat[4] = 1.5
    with pytest.raises(UndefinedSimilarityError, match=r"constant features \(first: item 4\).*rdm='euclidean'"):
        rsa(flat, y)
    assert -1 <= rsa(flat, y, "euclidean") <= 1
    with pytest.raises(UndefinedSimilarityError, match="at least 3 items"):
        rsa(x[:2], y[:2])
    equal = np.eye(3)  # three corners of a simplex: every distance is exactly √2
    with pytest.raises(UndefinedSimilarityError, match="every dissimilarity of x is equal"):
        rsa(equal, y[:3], "euclidean")
