"""Estimators standardise their input themselves (``standardize=True``, the CLI's default), once."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone

from diffprobe.probes import DataConfig, ProbeConfig, create_probe, probe_names, run_probe
from diffprobe.probes.errors import ProbeError
from diffprobe.probes.standardize import Standardizer
from tests.probes.support import blobs, blobs_store

FAST = {
    "logistic": {"Cs": (0.01, 0.1, 1.0)},
    "linear": {"epochs": 4, "lr": 0.05, "schedule": "constant"},
    "knn": {"k": 5},
    "attention": {"dim": 8, "heads": 2, "depth": 1, "epochs": 2, "batch_size": 25, "device": "cpu"},
    "difformer": {"dim": 8, "heads": 2, "depth": 1, "epochs": 2, "batch_size": 25, "device": "cpu"},
}


@pytest.fixture(scope="module")
def data():
    """Blobs on features of very different scales and offsets, as diffusion features are."""
    X, y = blobs(25, 4, (6, 2, 2), sep=3.0, seed=1)
    Xt, yt = blobs(15, 4, (6, 2, 2), sep=3.0, seed=2)
    scale = np.logspace(-2, 2, 24, dtype=np.float32).reshape(6, 2, 2)
    return X * scale + 5.0, y, Xt * scale + 5.0, yt


def test_every_probe_takes_standardize_with_the_cli_default():
    assert set(FAST) == set(probe_names())
    for name in probe_names():
        est = create_probe(name)
        assert est.get_params()["standardize"] is DataConfig().standardize is True
        assert clone(create_probe(name, standardize=False)).get_params()["standardize"] is False


@pytest.mark.parametrize("name", list(FAST))
def test_fit_standardises_with_training_statistics_exactly_as_the_standardizer(name, data):
    """``P().fit(X)`` is ``P(standardize=False).fit(Standardizer.fit(X).transform(X))``, bit for bit."""
    X, y, Xt, _ = data
    own = create_probe(name, **FAST[name]).fit(X, y)
    std = Standardizer.fit(X)
    np.testing.assert_array_equal(own.mean_, std.mean)
    np.testing.assert_array_equal(own.scale_, std.scale)
    assert own.mean_.shape == own.scale_.shape == (24,)
    outside = create_probe(name, **FAST[name], standardize=False).fit(std.transform(X), y)
    assert outside.mean_ is None and outside.scale_ is None
    np.testing.assert_array_equal(own.predict_proba(Xt), outside.predict_proba(std.transform(Xt)))


@pytest.mark.parametrize("name", ["logistic", "linear", "knn"])
def test_standardize_false_skips_it(name, data):
    X, y, Xt, _ = data
    raw = create_probe(name, **FAST[name], standardize=False).fit(X, y)
    assert raw.mean_ is None and raw.scale_ is None
    std = create_probe(name, **FAST[name]).fit(X, y)
    assert not np.allclose(raw.predict_proba(Xt), std.predict_proba(Xt), atol=1e-3)


def test_public_predictions_of_every_head_take_raw_features(data):
    """``decision_function`` and ``predict_proba_groups`` standardise too (they are public)."""
    X, y, Xt, _ = data
    X2, Xt2 = X.reshape(len(X), -1), Xt.reshape(len(Xt), -1)
    lo = create_probe("logistic", C=1.0).fit(X2, y)
    z = lo.decision_function(Xt2)
    expected = ((Xt2 - lo.mean_) / lo.scale_) @ lo.coef_.T + lo.intercept_
    np.testing.assert_allclose(z, expected, rtol=1e-5, atol=1e-5)
    li = create_probe("linear", **FAST["linear"], feature_groups=(12, 12)).fit(X2, y)
    np.testing.assert_allclose(li.predict_proba_groups(Xt2)[li.best_group_], li.predict_proba(Xt2), atol=1e-7)


def test_run_probe_passes_the_data_config_to_the_estimator():
    store = blobs_store(ts=(90,), blocks=(7,), pools=(2,))
    key = "t0090_b07_p2"
    on = run_probe(store, ProbeConfig("logistic", (key,), {"C": 1.0}))
    off = run_probe(store, ProbeConfig("logistic", (key,), {"C": 1.0}, DataConfig(standardize=False)))
    assert on.trained.estimator.standardize is True and on.trained.estimator.mean_ is not None
    assert off.trained.estimator.standardize is False and off.trained.estimator.mean_ is None
    assert on.config.to_dict()["params"] == {"C": 1.0}  # the data plan says it; params stay as given


def test_standardisation_is_set_in_one_place():
    with pytest.raises(ProbeError, match="standardisation to be set once.*use --standardize/--no-standardize"):
        ProbeConfig("logistic", ("k",), {"standardize": False})
    ProbeConfig("logistic", ("k",), {"standardize": False}, DataConfig(standardize=False))  # agreeing is fine


class _CountingRows:
    """A lazy (N, C, H, W) array that records how many rows each read asks for."""

    def __init__(self, X: np.ndarray) -> None:
        self.X, self.shape, self.ndim, self.dtype, self.reads = X, X.shape, X.ndim, X.dtype, []

    def __getitem__(self, idx):
        self.reads.append(len(range(*idx.indices(self.shape[0]))))
        return self.X[idx]

    def reshape(self, *shape):
        return self.X.reshape(*shape)


def test_moments_of_wide_rows_are_read_in_bounded_chunks():
    """A 16×16 map of 1,024 channels is 2 MB per row in float64: a fixed number of rows per chunk
    would read a whole 50k-item split at once, so fit bounds the bytes too — with the same moments."""
    rng = np.random.default_rng(0)
    X = (rng.normal(size=(300, 16, 4, 4)) * rng.uniform(0.1, 10, size=(16, 4, 4)) + 3).astype(np.float32)
    lazy = _CountingRows(X)
    small = Standardizer.fit(lazy, chunk_bytes=8 * 256 * 50)  # 50 rows of 256 float64 features
    assert max(lazy.reads) == 50 and sum(lazy.reads) == 300
    whole = Standardizer.fit(X)
    np.testing.assert_allclose(small.mean, X.reshape(300, -1).mean(0), rtol=1e-6)
    np.testing.assert_allclose(small.scale, X.reshape(300, -1).std(0), rtol=1e-5)
    np.testing.assert_allclose(small.mean, whole.mean, rtol=1e-6)
    np.testing.assert_allclose(small.scale, whole.scale, rtol=1e-6)
