"""From a store to probe inputs: keys, splits, subsets, draws, streaming, errors, save/load, metrics."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from diffprobe.errors import DiffprobeError, StoreKeyError
from diffprobe.probes import DataConfig, ProbeConfig, load_probe, run_probe, save_probe
from diffprobe.probes.data import default_splits, load_features
from diffprobe.probes.errors import LabelError, ProbeError
from diffprobe.probes.metrics import classification_metrics, confusion_matrix, topk_accuracy
from diffprobe.probes.splits import match_subset, stratified_fraction, stratified_holdout, stratified_kfold
from diffprobe.probes.standardize import Standardizer
from diffprobe.store.memory import MemoryStore
from tests.probes.support import blobs, blobs_store

KEY = "t0090_b07_p2"


@pytest.fixture(scope="module")
def store():
    return blobs_store()


def test_a_wrong_split_is_a_clear_error(store):
    with pytest.raises(StoreKeyError, match="unknown split 'test'; valid: train, val"):
        load_features(store, "test", [KEY])
    assert isinstance(ProbeError("x"), DiffprobeError)


def test_default_splits():
    assert default_splits(["train", "val"], None, None) == ("train", "val")
    assert default_splits(["train", "test"], None, None) == ("train", "test")
    assert default_splits(["all"], None, None) == ("all", None)
    assert default_splits(["train", "val"], "train", "train") == ("train", None)
    with pytest.raises(StoreKeyError, match="unknown split 'dev'"):
        default_splits(["train", "val"], None, "dev")


def test_split_without_labels_is_an_error():
    X, y = blobs(10, 3, (4, 1, 1))
    s = MemoryStore.from_arrays({"train": {KEY: X}, "test": {KEY: X}}, {"train": y, "test": np.full(len(y), -1)})
    with pytest.raises(LabelError, match="split 'test' has no labels \\(eval split\\); choose another --eval-split"):
        run_probe(s, ProbeConfig("knn", (KEY,), {}, DataConfig(eval_split="test")))
    s2 = MemoryStore.from_arrays({"train": {KEY: X}}, {"train": np.full(len(y), -1)})
    with pytest.raises(LabelError, match="split 'train' has no labels \\(train split\\)"):
        run_probe(s2, ProbeConfig("knn", (KEY,)))


def test_mismatched_item_counts_are_an_error():
    X, y = blobs(10, 3, (4, 1, 1))
    s = MemoryStore.from_arrays({"train": {KEY: X, "t0090_b08_p2": X[:-2]}}, {"train": y})
    with pytest.raises(ProbeError, match="mismatched item counts: expected every key to have 30 items .*t0090_b08_p2: 28"):
        load_features(s, "train", [KEY, "t0090_b08_p2"])


def test_concatenated_keys_and_train_statistics_only(store):
    f = load_features(store, "train", ["t0090_b07_p1", KEY])
    assert f.X.shape == (80, 6 + 24) and f.shapes == ((6, 1, 1), (6, 2, 2))
    res = run_probe(store, ProbeConfig("logistic", ("t0090_b07_p1", KEY), {"C": 1.0}))
    mean = res.trained.estimator.mean_
    np.testing.assert_allclose(mean, f.X.mean(0), atol=1e-5)  # train rows only, not val
    assert res.csv_row()["key"] == "t0090_b07_p1+t0090_b07_p2" and res.csv_row()["block"] == "7+7" and res.csv_row()["pool"] == "1+2"


def test_one_split_holdout_and_kfold():
    X, y = blobs(20, 4, (6, 2, 2), sep=3.0)
    s = MemoryStore.from_arrays({"all": {KEY: X}}, {"all": y})
    hold = run_probe(s, ProbeConfig("logistic", (KEY,), {"C": 1.0}, DataConfig(holdout=0.25, seed=3)))
    assert hold.eval_split == "all[holdout=0.25]" and hold.n_eval == 20 and hold.n_train == 60
    folds = run_probe(s, ProbeConfig("logistic", (KEY,), {"C": 1.0}, DataConfig(folds=4)))
    assert folds.n_eval == 80 and len(folds.fold_scores) == 4 and folds.trained is None
    assert folds.metrics["top1"] > 0.8


def test_train_subset_file_and_fraction(store, tmp_path):
    ids = store.ids("train")
    keep = [ids[i] for i in range(0, 80, 4)]  # 20 items
    lst = tmp_path / "subset.txt"
    lst.write_text("# one id per line\n" + "\n".join(f"{i} 0" for i in keep) + "\nnot/there.png\n")
    res = run_probe(store, ProbeConfig("knn", (KEY,), {"k": 3}, DataConfig(train_subset=str(lst))))
    assert res.n_train == 20
    res = run_probe(store, ProbeConfig("knn", (KEY,), {"k": 3}, DataConfig(train_fraction=0.25, seed=1)))
    assert res.n_train == 20  # 5 of each of the 4 classes
    lst.write_text("nothing/matches.png\n")
    with pytest.raises(ProbeError, match="got no match"):
        run_probe(store, ProbeConfig("knn", (KEY,), {}, DataConfig(train_subset=str(lst))))


def test_match_subset_by_id_path_or_file_name():
    ids = np.array(["n01/a_1.JPEG", "n01/a_2.JPEG", "n02/b_1.JPEG"])
    paths = np.array(["/data/train/n01/a_1.JPEG", "/data/train/n01/a_2.JPEG", "/data/train/n02/b_1.JPEG"])
    assert match_subset(["n01/a_2.JPEG"], ids, paths).tolist() == [1]
    assert match_subset(["/data/train/n02/b_1.JPEG"], ids, paths).tolist() == [2]
    assert match_subset(["a_1.JPEG", "b_1.JPEG"], ids, paths).tolist() == [0, 2]


def test_noise_draws_train_as_samples_and_average_at_eval():
    s = blobs_store(ts=(90,), blocks=(7,), pools=(2,), draws=3)
    f = load_features(s, "train", [KEY])
    assert f.draws == 3 and f.X.shape == (80 * 3, 24)
    res = run_probe(s, ProbeConfig("logistic", (KEY,), {"C": 1.0}))
    assert res.n_eval == 80 and res.metrics["n"] == 80 and res.metrics["top1"] > 0.8


def test_invalid_rows_are_skipped(store):
    X, y = blobs(10, 3, (4, 1, 1))
    X[3] = np.nan
    s = MemoryStore.from_arrays({"train": {KEY: X}, "val": {KEY: X.copy()}}, {"train": y, "val": y})
    s.data["val"].valid = np.ones(len(y), bool)
    s.data["val"].valid[5] = False
    res = run_probe(s, ProbeConfig("knn", (KEY,), {"k": 3}))
    assert res.n_train == 29 and res.n_eval == 28  # NaN row 3 dropped, invalid row 5 dropped


def test_streamed_run_equals_in_memory(store):
    eager = run_probe(store, ProbeConfig("logistic", (KEY,), {"C": 1.0}))
    lazy = run_probe(store, ProbeConfig("logistic", (KEY,), {"C": 1.0}, DataConfig(lazy=True)))
    assert lazy.metrics["top1"] == pytest.approx(eager.metrics["top1"], abs=0.013)


@pytest.mark.parametrize("name,params", [
    ("logistic", {}), ("linear", {"lr": (0.01, 0.1), "epochs": 3}), ("knn", {"k": 5}),
    ("attention", {"dim": 8, "heads": 2, "depth": 1, "epochs": 1, "device": "cpu"}),
])
def test_save_and_reload_predicts_the_same(store, tmp_path, name, params):
    key = "t0090_b07_full" if name == "attention" else KEY
    res = run_probe(store, ProbeConfig(name, (key,), params))
    out = save_probe(res.trained, tmp_path / name)
    assert sorted(p.name for p in out.iterdir()) == ["probe.json", "weights.pt"]
    doc = json.loads((out / "probe.json").read_text())
    assert doc["probe"] == name and doc["keys"][0]["key"] == key
    back = load_probe(out)
    ids, proba = back.predict_store(store, "val")
    assert len(ids) == 80
    np.testing.assert_allclose(proba, res.trained.predict_proba(load_features(store, "val", [key])), atol=1e-5)


def test_loading_refuses_pickled_objects(store, tmp_path):
    res = run_probe(store, ProbeConfig("knn", (KEY,), {"k": 3}))
    out = save_probe(res.trained, tmp_path / "p")
    torch.save({"evil": object()}, out / "weights.pt")  # needs unpickling of an arbitrary class
    with pytest.raises(Exception, match="(?i)weights_only|unsupported|global"):
        load_probe(out)
    with pytest.raises(ProbeError, match="expected a saved probe directory"):
        load_probe(tmp_path)


def test_standardizer_in_chunks_matches_numpy():
    rng = np.random.default_rng(0)
    X = (rng.normal(size=(1000, 7)) * [1, 10, 100, 1e3, 1e-3, 0, 5] + 1e4).astype(np.float32)
    s = Standardizer.fit(X, chunk=37)
    np.testing.assert_allclose(s.mean, X.astype(np.float64).mean(0), rtol=1e-6)
    expected = X.astype(np.float64).std(0)
    np.testing.assert_allclose(s.scale[[0, 1, 2, 3, 6]], expected[[0, 1, 2, 3, 6]], rtol=1e-3)
    assert s.scale[5] == 1.0  # constant column


def test_metrics_by_hand():
    y = np.array([0, 1, 2, 2])
    proba = np.array([[0.6, 0.3, 0.1], [0.5, 0.4, 0.1], [0.1, 0.2, 0.7], [0.2, 0.5, 0.3]])
    m = classification_metrics(y, proba, ["a", "b", "c"])
    assert m["top1"] == 0.5 and m["per_class"] == {"a": 1.0, "b": 0.0, "c": 0.5}
    assert m["confusion"] == [[1, 0, 0], [1, 0, 0], [0, 1, 1]]
    assert topk_accuracy(y, proba, 2) == 1.0 and topk_accuracy(np.array([2]), proba[1:2], 2) == 0.0
    with pytest.raises(ProbeError, match="expected labels in \\[0, 3\\)"):
        classification_metrics(np.array([3]), proba[:1])


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 60), st.integers(2, 9), st.integers(0, 2**31 - 1))
def test_metric_properties(n, k, seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    proba = rng.random((n, k))
    m = classification_metrics(y, proba)
    assert 0 <= m["top1"] <= m["top5"] <= 1
    assert np.asarray(m["confusion"]).sum() == n
    assert np.array_equal(np.asarray(m["confusion"]).sum(1), np.bincount(y, minlength=k))
    assert confusion_matrix(y, proba.argmax(1), k).trace() == round(m["top1"] * n)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 4), min_size=4, max_size=80), st.integers(0, 100))
def test_stratified_selections(labels, seed):
    y = np.array(labels)
    fit, held = stratified_holdout(y, 0.3, seed)
    assert np.intersect1d(fit, held).size == 0 and fit.size + held.size == y.size
    assert np.array_equal(stratified_holdout(y, 0.3, seed)[1], held)  # seeded
    for c in np.unique(y):
        if (y == c).sum() >= 2:
            assert (y[held] == c).any() and (y[fit] == c).any()
    if y.size >= 3:
        folds = stratified_kfold(y, 3, seed)
        assert np.array_equal(np.sort(np.concatenate([t for _, t in folds])), np.arange(y.size))
    frac = stratified_fraction(y, 0.5, seed)
    assert set(np.unique(y[frac])) == set(np.unique(y))


def test_training_on_every_item_reads_the_rows_and_labels_themselves(store):
    """Every item of the split (the usual case): X and y as loaded, no index over the rows (for 1.28M
    lazy rows an index array in dask's graph) and no label copy; any other subset is indexed."""
    from diffprobe.probes.data import is_every_row

    for lazy in (False, True):
        f = load_features(store, "train", [KEY], lazy=lazy)
        X, y = f.training_rows(f.labelled())
        assert X is f.X and y is f.y, "every item: no copy"
        some = f.labelled()[::2]
        X, y = f.training_rows(some)
        assert X is not f.X and np.array_equal(np.asarray(X), np.asarray(f.X)[some]) and np.array_equal(y, f.y[some])
    n = 200_000
    assert is_every_row(np.arange(n), n) and is_every_row(np.arange(n, dtype=np.int32), n)
    assert is_every_row(np.arange(0), 0)
    shuffled = np.arange(n)
    shuffled[[70_000, 140_000]] = shuffled[[140_000, 70_000]]  # the same rows in another order: not X's order
    assert not is_every_row(shuffled, n) and not is_every_row(np.arange(n - 1), n) and not is_every_row(np.arange(n, dtype=float), n)


@pytest.mark.parametrize("y", [np.array([3, 1, 3, 7, 1], dtype=np.int16), np.array([5, 2, 5]), np.array(["b", "a", "b"]),
                               np.array([-1, 2, 2]), np.array([0, 2**21, 0]), np.array([1.0, 2.0, 1.0])])  # fmt: skip
def test_labels_are_encoded_as_np_unique_does(y):
    """Class ids are counted (1.28M labels: one int64 array, where a sort holds four); names, negative
    or huge ids and float labels are sorted; every way gives np.unique's classes and codes."""
    from diffprobe.probes.base import encode_labels

    classes, codes = encode_labels(y)
    want_classes, want_codes = np.unique(y, return_inverse=True)
    assert classes.dtype == want_classes.dtype and np.array_equal(classes, want_classes)
    assert codes.dtype == np.int64 and np.array_equal(codes, want_codes)


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 400), st.floats(0.01, 1.0), st.integers(1, 97), st.integers(0, 2**16))
def test_a_row_subset_reads_what_fancy_indexing_gives(n, share, window, seed):
    """The probes' hold-out parts of a chunked X: X[rows] for every row slice, read through windows
    of X (no index in dask's graph), never more than ``window`` rows of X at a time."""
    import dask.array as da

    from diffprobe.probes.arrays import RowSubset, take_rows

    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 3)).astype(np.float32)
    rows = np.flatnonzero(rng.random(n) < share)
    lazy = da.from_array(X, chunks=7)
    reads = []

    class Counted:
        shape, dtype = lazy.shape, lazy.dtype

        def __getitem__(self, index):
            reads.append(index.stop - index.start)
            return lazy[index]

    subset = RowSubset(Counted(), rows, window=window)
    assert subset.shape == (rows.size, 3) and len(subset) == rows.size
    for a, b in [(0, rows.size), (0, 5), (rows.size // 3, rows.size // 2 + 1), (rows.size - 1, rows.size + 4)]:
        np.testing.assert_array_equal(subset[a:b], X[rows][a:b])
    assert max(reads, default=0) <= window
    assert isinstance(take_rows(lazy, rows), RowSubset) and isinstance(take_rows(X, rows), np.ndarray)
    with pytest.raises(TypeError, match="contiguous row slices"):
        subset[rows[:2]]
