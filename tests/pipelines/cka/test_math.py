"""CKA math: hypothesis properties, Gram form = feature form, estimators, guard rails, a fixed reference case."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from diffprobe.errors import ConfigError, DiffprobeError
from diffprobe.pipelines.cka.config import KERNEL_NAMES
from diffprobe.pipelines.cka.math import (
    ESTIMATORS,
    KERNELS,
    DegenerateInputError,
    cka,
    cka_from_grams,
    hsic,
    linear_cka_features,
    median_distance,
    minibatch_cka,
)

PROPS = settings(max_examples=25, deadline=None)
KERNEL_ESTIMATOR = st.sampled_from([(k, e) for k in ("linear", "rbf") for e in ("biased", "unbiased")])


@st.composite
def pair(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    """Two related feature sets over the same n items: y mixes a linear map of x with noise."""
    n, dx, dy = draw(st.integers(6, 24)), draw(st.integers(1, 6)), draw(st.integers(1, 6))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = rng.normal(size=(n, dx)) * rng.uniform(0.1, 10.0) + rng.normal(size=dx) * 3
    y = x @ rng.normal(size=(dx, dy)) + draw(st.floats(0.05, 3.0)) * rng.normal(size=(n, dy))
    return x, y


def orthogonal(d: int, seed: int) -> np.ndarray:
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(d, d)))
    return q * np.sign(np.diag(r))


@PROPS
@given(pair(), KERNEL_ESTIMATOR)
def test_self_similarity_is_one(xy, ke):
    x, _ = xy
    assert cka(x, x, *ke) == pytest.approx(1.0, abs=1e-12)


@PROPS
@given(pair(), KERNEL_ESTIMATOR)
def test_symmetric(xy, ke):
    x, y = xy
    assert cka(x, y, *ke) == pytest.approx(cka(y, x, *ke), abs=1e-12)


@PROPS
@given(pair(), KERNEL_ESTIMATOR, st.integers(0, 1000), st.floats(1e-3, 1e3), st.booleans())
def test_invariant_to_rotation_and_isotropic_scaling(xy, ke, seed, scale, on_x):
    x, y = xy
    ref = cka(x, y, *ke)
    if on_x:
        x = scale * x @ orthogonal(x.shape[1], seed)
    else:
        y = scale * y @ orthogonal(y.shape[1], seed)
    assert cka(x, y, *ke) == pytest.approx(ref, abs=1e-9)


@PROPS
@given(pair(), st.floats(-100, 100))
def test_invariant_to_translation(xy, shift):
    x, y = xy
    for est in ESTIMATORS:
        assert cka(x + shift, y, estimator=est) == pytest.approx(cka(x, y, estimator=est), abs=1e-9)


@PROPS
@given(pair())
def test_biased_linear_cka_in_unit_interval(xy):
    x, y = xy
    v = cka(x, y)
    assert -1e-12 <= v <= 1 + 1e-12


@PROPS
@given(pair(), st.sampled_from(sorted(ESTIMATORS)))
def test_gram_form_equals_feature_form(xy, est):
    x, y = xy
    assert linear_cka_features(x, y, est) == pytest.approx(cka(x, y, "linear", est), abs=1e-10)


def test_feature_form_handles_features_far_from_zero():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(200, 5)) + 1e4
    y = x @ rng.normal(size=(5, 4)) + rng.normal(size=(200, 4)) - 5e3
    for est in ESTIMATORS:
        assert linear_cka_features(x, y, est) == pytest.approx(cka(x - 1e4, y + 5e3, estimator=est), abs=1e-9)


# --- a fixed case against a straightforward implementation written here --------------------------


def _naive_hsic(k: np.ndarray, l: np.ndarray, unbiased: bool) -> float:
    n = k.shape[0]
    if not unbiased:
        h = np.eye(n) - np.ones((n, n)) / n
        return float(np.trace(k @ h @ l @ h)) / (n - 1) ** 2
    kt, lt = k.copy(), l.copy()  # Song et al. 2012, eq. 5, term by term
    np.fill_diagonal(kt, 0)
    np.fill_diagonal(lt, 0)
    one = np.ones(n)
    term1 = np.trace(kt @ lt)
    term2 = (one @ kt @ one) * (one @ lt @ one) / ((n - 1) * (n - 2))
    term3 = 2.0 / (n - 2) * (one @ kt @ lt @ one)
    return float(term1 + term2 - term3) / (n * (n - 3))


def _naive_gram(x: np.ndarray, kernel: str, fraction: float = 1.0) -> np.ndarray:
    n = x.shape[0]
    if kernel == "linear":
        return np.array([[float(x[i] @ x[j]) for j in range(n)] for i in range(n)])
    dist = np.array([[float(np.linalg.norm(x[i] - x[j])) for j in range(n)] for i in range(n)])
    sigma = fraction * np.median([dist[i, j] for i in range(n) for j in range(i + 1, n)])
    return np.exp(-(dist**2) / (2 * sigma**2))


def _naive_cka(x: np.ndarray, y: np.ndarray, kernel: str, unbiased: bool, fraction: float = 1.0) -> float:
    k, l = _naive_gram(x, kernel, fraction), _naive_gram(y, kernel, fraction)
    return _naive_hsic(k, l, unbiased) / np.sqrt(_naive_hsic(k, k, unbiased) * _naive_hsic(l, l, unbiased))


@pytest.mark.parametrize("kernel", ["linear", "rbf"])
@pytest.mark.parametrize("estimator", ["biased", "unbiased"])
def test_fixed_case_matches_straightforward_implementation(kernel, estimator):
    rng = np.random.default_rng(2024)
    x = rng.normal(size=(17, 4))
    y = np.tanh(x @ rng.normal(size=(4, 3))) + 0.3 * rng.normal(size=(17, 3))
    expect = _naive_cka(x, y, kernel, estimator == "unbiased", fraction=0.8)
    assert cka(x, y, kernel, estimator, rbf_fraction=0.8) == pytest.approx(expect, abs=1e-12)
    k, l = _naive_gram(x, kernel, 0.8), _naive_gram(y, kernel, 0.8)
    assert hsic(k, l, estimator) == pytest.approx(_naive_hsic(k, l, estimator == "unbiased"), rel=1e-12)


def test_fixed_linear_value():
    # Worked by hand: x = [0,1,2,3], y = x² → centred x = [-1.5,-.5,.5,1.5], y = [-3.5,-2.5,.5,5.5];
    # 1-D linear CKA = corr(x, y)² = (Σ x_c y_c)² / (Σ x_c² Σ y_c²) = 15² / (5 · 49) = 225/245.
    x = np.arange(4.0)[:, None]
    assert cka(x, x**2) == pytest.approx(225 / 245, abs=1e-14)


def test_median_distance_uses_pairs_above_the_diagonal():
    x = np.array([[0.0], [1.0], [3.0]])  # pair distances 1, 3, 2 → median 2
    import torch

    assert median_distance(torch.from_numpy(x)) == pytest.approx(2.0)


# --- estimator behaviour ----------------------------------------------------------------------------


def test_unbiased_near_zero_on_independent_data_while_biased_is_inflated():
    biased, unbiased = [], []
    for seed in range(10):
        rng = np.random.default_rng(seed)
        x, y = rng.normal(size=(20, 50)), rng.normal(size=(20, 50))
        biased.append(cka(x, y))
        unbiased.append(cka(x, y, estimator="unbiased"))
    assert min(biased) > 0.5  # small n, wide features: the biased estimate is far from 0
    assert abs(np.mean(unbiased)) < 0.1 and max(map(abs, unbiased)) < 0.3


def test_minibatch_converges_to_full_unbiased_as_batches_grow():
    rng = np.random.default_rng(7)
    x = rng.normal(size=(600, 6))
    y = np.sin(x @ rng.normal(size=(6, 5))) + 0.5 * rng.normal(size=(600, 5))
    full = cka(x, y, estimator="unbiased")
    errors = [np.mean([abs(minibatch_cka(x, y, b, seed=s) - full) for s in range(3)]) for b in (8, 32, 150)]
    assert errors[0] > errors[1] > errors[2]
    assert minibatch_cka(x, y, 600) == pytest.approx(full, abs=1e-12)  # one batch = all items
    assert minibatch_cka(x, y, 600, "rbf") == pytest.approx(cka(x, y, "rbf", "unbiased"), abs=1e-12)


# --- guard rails -----------------------------------------------------------------------------------


def test_unbiased_needs_four_items():
    x = np.random.default_rng(0).normal(size=(3, 2))
    with pytest.raises(DegenerateInputError, match="at least 4 items, got 3"):
        cka(x, x, estimator="unbiased")
    with pytest.raises(DegenerateInputError, match="at least 4 items, got 3"):
        linear_cka_features(x, x, "unbiased")
    with pytest.raises(ConfigError, match="minibatch size ≥ 4"):
        minibatch_cka(x, x, 3)


def test_constant_features_are_a_clear_error():
    x = np.random.default_rng(0).normal(size=(10, 3))
    const = np.ones((10, 2))
    for fn in (lambda: cka(x, const), lambda: cka(const, x, "rbf"), lambda: linear_cka_features(x, const)):
        with pytest.raises(DegenerateInputError, match="constant"):
            fn()
    with pytest.raises(DegenerateInputError, match="constant"):
        cka_from_grams(np.ones((10, 10)), x @ x.T)


def test_bad_input_messages():
    x = np.random.default_rng(0).normal(size=(10, 3))
    with pytest.raises(ConfigError, match="unknown kernel 'cosine'; valid: linear, rbf"):
        cka(x, x, "cosine")
    with pytest.raises(ConfigError, match="valid: biased, unbiased"):
        cka(x, x, estimator="fancy")
    with pytest.raises(ConfigError, match="same number of items in x and y, got 10 and 9"):
        cka(x, x[:9])
    with pytest.raises(DegenerateInputError, match="NaN"):
        cka(np.where(np.eye(10, 3) > 0, np.nan, x), x)
    assert issubclass(DegenerateInputError, DiffprobeError)


def test_cli_kernel_names_match_registry():
    assert set(KERNEL_NAMES) == set(KERNELS)
