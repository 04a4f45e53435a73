"""SVCCA, PWCCA and the Procrustes distance: the papers' formulas, invariances, refusals, ridge."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.linalg import orthogonal_procrustes

from diffprobe.pipelines.similarity.math import UndefinedSimilarityError, moments_of, procrustes, pwcca, svcca, whitening
from tests.pipelines.similarity import reference as ref
from tests.pipelines.similarity.reference import orthogonal, related

PROPS = settings(max_examples=10, deadline=None)


@pytest.mark.parametrize("keep", [0.5, 0.9, 0.99, 1.0])
def test_svcca_matches_svd_then_cca(keep):
    x, y = related(200, 14, 9, seed=1, shift=5.0)
    assert svcca(x, y, keep) == pytest.approx(ref.svcca(x, y, keep), abs=1e-10)


def test_svcca_keeps_the_fewest_directions_that_explain_the_variance():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 6)) * np.array([10.0, 5.0, 1.0, 0.5, 0.1, 0.01])
    m = moments_of(torch.from_numpy(x))
    lam = np.sort(np.linalg.eigvalsh(m.scatter.numpy()))[::-1]
    for keep in (0.5, 0.9, 0.99, 0.999999, 1.0):
        expect = int(np.argmax(np.cumsum(lam) / lam.sum() >= keep - 1e-15)) + 1
        assert whitening(m, keep).kept == expect


def test_pwcca_matches_projection_weighted_cca():
    x, y = related(250, 10, 8, seed=2, shift=-3.0)
    assert pwcca(x, y) == pytest.approx(ref.pwcca(x, y), abs=1e-10)
    assert pwcca(y, x) == pytest.approx(ref.pwcca(y, x), abs=1e-10)
    assert pwcca(x, y) != pytest.approx(pwcca(y, x), abs=1e-6)  # weights come from the first argument


def test_procrustes_matches_the_formula_and_the_minimisation_it_solves():
    x, y = related(150, 8, 8, seed=3, shift=2.0)
    d = procrustes(x, y)
    assert d == pytest.approx(ref.procrustes(x, y), abs=1e-12)
    a, b = x - x.mean(0), y - y.mean(0)
    a, b = a / np.linalg.norm(a), b / np.linalg.norm(b)
    r, _ = orthogonal_procrustes(b, a)
    assert d == pytest.approx(np.linalg.norm(a - b @ r) ** 2, abs=1e-12)
    wide = np.hstack([y, y[:, :3] ** 2])  # Dx ≠ Dy: the same as zero-padding x
    assert procrustes(x, wide) == pytest.approx(ref.procrustes(np.hstack([x, np.zeros((150, 3))]), wide), abs=1e-12)


def test_self_similarity_symmetry_and_range():
    x, y = related(120, 7, 5, seed=4)
    assert svcca(x, x) == pytest.approx(1.0, abs=1e-12) and pwcca(x, x) == pytest.approx(1.0, abs=1e-12)
    assert procrustes(x, x) == pytest.approx(0.0, abs=1e-12)
    assert svcca(x, y) == pytest.approx(svcca(y, x), abs=1e-12)
    assert procrustes(x, y) == pytest.approx(procrustes(y, x), abs=1e-12)
    assert 0 < svcca(x, y) < 1 and 0 < pwcca(x, y) < 1 and 0 < procrustes(x, y) < 2


@PROPS
@given(st.integers(0, 10_000), st.floats(1e-3, 1e3), st.floats(-50, 50))
def test_invariant_to_orthogonal_transforms_isotropic_scaling_and_translation(seed, scale, shift):
    x, y = related(80, 6, 5, seed=seed)
    moved = scale * x @ orthogonal(6, seed + 1) + shift
    for fn in (lambda a, b: svcca(a, b, 1.0), procrustes):
        assert fn(moved, y) == pytest.approx(fn(x, y), abs=1e-9)
        assert fn(y, moved) == pytest.approx(fn(y, x), abs=1e-9)
    assert pwcca(y, moved) == pytest.approx(pwcca(y, x), abs=1e-9)  # the second argument: any rotation
    scaled = scale * x[:, ::-1] * np.array([1, -1, 1, -1, 1, 1]) + shift  # the first: scale, shift, permute, flip
    assert pwcca(scaled, y) == pytest.approx(pwcca(x, y), abs=1e-9)


def test_pwcca_depends_on_the_first_arguments_feature_basis():
    """[M18]'s weights sum |⟨h_i, x_j⟩| over x's own features: a rotation of x changes them."""
    x, y = related(200, 6, 5, seed=9)
    assert pwcca(x @ orthogonal(6, 0), y) != pytest.approx(pwcca(x, y), abs=1e-3)


def test_svcca_keeps_the_same_directions_after_a_rotation():
    x, y = related(120, 8, 6, seed=5)
    x = x * np.array([5.0, 4, 3, 2, 1, 0.5, 0.2, 0.1])
    moved = 3.0 * x @ orthogonal(8, 7) - 1.0
    assert svcca(moved, y, 0.95) == pytest.approx(svcca(x, y, 0.95), abs=1e-9)


@pytest.mark.parametrize("fn", [lambda a, b: svcca(a, b, 1.0), pwcca])
def test_cca_with_more_features_than_items_is_refused_with_what_to_do(fn):
    x, y = related(20, 30, 25, seed=6)
    with pytest.raises(UndefinedSimilarityError, match=r"19 \+ 19 kept dimensions over 20 items is degenerate.*ridge > 0"):
        fn(x, y)


def test_ridge_regularises_instead_and_keeps_the_scale_invariance():
    x, y = related(20, 30, 25, seed=6)
    v = svcca(x, y, 1.0, ridge=0.1)
    assert 0 < v < 1
    assert svcca(7.0 * x, y, 1.0, ridge=0.1) == pytest.approx(v, abs=1e-12)
    assert 0 < pwcca(x, y, ridge=0.1) < 1


def test_rank_deficient_features_drop_their_null_directions():
    x, y = related(100, 5, 4, seed=8)
    padded = np.hstack([x, x[:, :2] @ np.array([[1.0, 2.0], [3.0, -1.0]]), np.zeros((100, 1))])  # 3 redundant columns
    assert svcca(padded, y, 1.0) == pytest.approx(svcca(x, y, 1.0), abs=1e-9)
    assert pwcca(y, padded) == pytest.approx(pwcca(y, x), abs=1e-9)


def test_constant_or_too_few_items_are_refused():
    x, y = related(30, 4, 3)
    for fn in (svcca, pwcca, procrustes):
        with pytest.raises(UndefinedSimilarityError, match="constant across all 30 items"):
            fn(np.full((30, 4), 2.5), y)
        with pytest.raises(UndefinedSimilarityError, match="at least 2 items"):
            fn(x[:1], y[:1])
