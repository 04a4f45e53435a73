"""Probes on stores with views: training samples every (view, draw) row of an item, evaluation reads
view 0 only (averaged over draws) — for every probe, k-fold and hold-out, saved-probe prediction,
sweeps, dense probes (each view with its own mask), CKA and DifFeed's stored first pass."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

import diffprobe.probes.run as run_mod
from diffprobe.errors import StoreError
from diffprobe.extract.masks import split_masks
from diffprobe.extract.sources.decode import decode_image
from diffprobe.extract.sources.discover import discover
from diffprobe.extract.sources.fmnist_masks import write_fmnist_masks
from diffprobe.extract.sources.item import Item
from diffprobe.extract.views import ViewSpec
from diffprobe.pipelines.cka import cka_blocks, cka_stores
from diffprobe.pipelines.sweep import SweepConfig, run_sweep
from diffprobe.probes import DataConfig, ProbeConfig, run_probe
from diffprobe.probes.data import load_features
from diffprobe.probes.dense.run import dense_probe
from diffprobe.probes.dense.source import PIXELS, DenseSource
from diffprobe.probes.images import ImageSet, stored_pass1
from diffprobe.probes.logistic import LogisticProbe
from diffprobe.probes.run import run_probe_per_key
from diffprobe.store.arrays import ArrayLayout
from diffprobe.store.layout import FeatureKey
from diffprobe.store.memory import MemoryStore
from diffprobe.store.select import KeySelection
from diffprobe.store.store import FeatureStore, create_store
from tests.probes.support import blobs

KEY, KEY2 = "t0090_b07_p2", "t0090_b09_p2"
V, K = 3, 2


def coded(split_seed: int, n_per_class: int = 5, views: int = V, draws: int = K) -> tuple[np.ndarray, np.ndarray]:
    """Class blobs (N, V, K, 4, 2, 2) whose value at [i, v, k, 0, 0, 0] is the code 100·i + 10·v + k
    (so any row of X says which item, view and draw it is), and labels (N,)."""
    X, y = blobs(n_per_class, 4, (4, 2, 2), seed=split_seed)
    n = len(y)
    out = np.repeat(np.repeat(X[:, None, None], views, 1), draws, 2)
    out += 0.05 * np.random.default_rng(split_seed).normal(size=out.shape).astype(np.float32)  # every row differs
    out[..., 0, 0, 0] = 100 * np.arange(n)[:, None, None] + 10 * np.arange(views)[:, None] + np.arange(draws)
    return out, y


def decode(X: np.ndarray) -> list[tuple[int, int, int]]:
    """(item, view, draw) of each row of a flat X (N·…, D) made from :func:`coded` arrays."""
    c = np.rint(np.asarray(X)[:, 0]).astype(int)
    return list(zip((c // 100).tolist(), (c % 100 // 10).tolist(), (c % 10).tolist()))


def views_store(splits: tuple[str, ...] = ("train", "val"), keys: tuple[str, ...] = (KEY,)) -> MemoryStore:
    arrays, labels = {}, {}
    for i, split in enumerate(splits):
        arrays[split] = {}
        for j, key in enumerate(keys):
            arrays[split][key], labels[split] = coded(10 * i + j)
    return MemoryStore.from_arrays(arrays, labels, [f"c{c}" for c in range(4)], views=V)


def view0(store: MemoryStore) -> MemoryStore:
    """The same store holding view 0 only, without a view axis."""
    arrays = {s: {k: store.read(s, k)[:, 0] for k in store.keys(s)} for s in store.splits}
    return MemoryStore.from_arrays(arrays, {s: store.labels(s) for s in store.splits}, store.class_names)


@pytest.fixture
def seen(monkeypatch) -> dict[str, list]:
    """Records what every probe created by a run is given: fit (X, y), predict_proba(X), predict_proba_groups(X)."""
    calls: dict[str, list] = {"fit": [], "predict": []}
    real = run_mod.create_probe

    def create(name, **params):
        est = real(name, **params)
        fit, proba = est.fit, est.predict_proba

        def rec_fit(X, y):
            calls["fit"].append((np.asarray(X).copy(), np.asarray(y).copy()))
            return fit(X, y)

        def rec_proba(X):
            calls["predict"].append(np.asarray(X).copy())
            return proba(X)

        est.fit, est.predict_proba = rec_fit, rec_proba
        if hasattr(est, "predict_proba_groups"):
            groups = est.predict_proba_groups

            def rec_groups(X):
                calls["predict"].append(np.asarray(X).copy())
                return groups(X)

            est.predict_proba_groups = rec_groups
        return est

    monkeypatch.setattr(run_mod, "create_probe", create)
    return calls


@pytest.mark.parametrize("lazy", [False, True])
def test_rows_run_item_then_view_then_draw_and_evaluation_rows_are_view_0(lazy):
    store = views_store(("train",))
    f = load_features(store, "train", [KEY], lazy=lazy)
    assert (f.views, f.draws, f.per_item, f.shapes, f.X.shape) == (V, K, V * K, ((4, 2, 2),), (20 * V * K, 16))
    items = np.array([1, 4])
    assert decode(f.X[f.rows(items)]) == [(i, v, k) for i in items for v in range(V) for k in range(K)]
    assert decode(f.X[f.eval_rows(items)]) == [(i, 0, k) for i in items for k in range(K)]
    first = load_features(store, "train", [KEY], lazy=lazy, first_view=True)
    assert (first.views, first.draws) == (1, K) and decode(first.X) == [(i, 0, k) for i in range(20) for k in range(K)]
    assert np.array_equal(np.asarray(first.X), np.asarray(f.X[f.eval_rows(np.arange(20))]))


def test_shapes_that_disagree_with_the_store_s_views_are_clear_errors(caplog):
    X, y = coded(0)
    bad = MemoryStore.from_arrays({"train": {KEY: X[:, 0, 0]}}, {"train": y}, views=V)
    with pytest.raises(StoreError, match=r"expected array 't0090_b07_p2' to be \(N, V, \[K,\] C, H, W\), got shape \(20, 4, 2, 2\)"):
        load_features(bad, "train", [KEY])
    two = MemoryStore.from_arrays({"train": {KEY: X[:, :2]}}, {"train": y}, views=V)
    with pytest.raises(StoreError, match="to hold the store's 3 views on axis 1, got shape \\(20, 2, 2, 4, 2, 2\\)"):
        load_features(two, "train", [KEY])
    # an imported array (one row per item) beside extracted views: view 0 of the extracted ones, said once
    mixed = MemoryStore.from_arrays({"train": {KEY: X[:, :, 0], "mae": X[:, 1, 0]}}, {"train": y}, views=V)
    with caplog.at_level(logging.WARNING):
        f = load_features(mixed, "train", [KEY, "mae"])
    assert f.views == 1 and "using view 0 only" in caplog.text
    assert decode(f.X) == [(i, 0, 0) for i in range(20)] and decode(f.X[:, 16:]) == [(i, 1, 0) for i in range(20)]


PROBES = {
    "logistic": {"C": 1.0},
    "linear": {"epochs": 2, "batch_size": 32},
    "knn": {"k": 5},
    "attention": {"dim": 8, "heads": 2, "depth": 1, "epochs": 1, "batch_size": 32, "device": "cpu", "amp": False},
    "difformer": {"dim": 8, "heads": 2, "depth": 1, "epochs": 1, "batch_size": 32, "device": "cpu", "amp": False},
}


@pytest.mark.parametrize("probe", PROBES)
def test_every_probe_trains_on_every_view_and_draw_and_evaluates_view_0(probe, seen):
    store = views_store()
    res = run_probe(store, ProbeConfig(probe, (KEY,), PROBES[probe]))
    [(X, y)] = seen["fit"]
    assert decode(X) == [(i, v, k) for i in range(20) for v in range(V) for k in range(K)]  # N·V·K rows
    assert np.array_equal(y, np.repeat(store.labels("train"), V * K))
    [Xe] = seen["predict"]
    assert decode(Xe) == [(i, 0, k) for i in range(20) for k in range(K)]  # view 0's draws only
    assert res.n_train == 20 and res.n_eval == 20
    # the fitted probe predicts on the views store exactly what it predicts on a copy holding view 0 only
    ids, p = res.trained.predict_store(store, "val")
    ids0, p0 = res.trained.predict_store(view0(store), "val")
    assert np.array_equal(ids, ids0) and np.array_equal(p, p0)


@pytest.mark.parametrize("probe, params", [("logistic", {}), ("linear", {"lr": [0.01, 0.1], "epochs": 2})])
def test_model_selection_holds_out_whole_items(probe, params, monkeypatch):
    """Choosing C (logistic) or the lr (linear) on a hold-out never validates on a view or draw of a fitted item."""
    from diffprobe.probes import splits

    store = views_store()
    made = []
    real = splits.stratified_holdout

    def spy(y, fraction, seed=0, group=1):
        fit, held = real(y, fraction, seed, group)
        made.append((group, fit, held))
        return fit, held

    monkeypatch.setattr(f"diffprobe.probes.{probe}.stratified_holdout", spy)
    res = run_probe(store, ProbeConfig(probe, (KEY,), params))
    [(group, fit, held)] = made
    assert group == V * K and res.trained.estimator.rows_per_item == V * K
    assert not set(fit // group) & set(held // group) and len(held) % group == 0


@pytest.mark.parametrize("data", [DataConfig(folds=3), DataConfig(holdout=0.25)])
def test_held_out_items_are_scored_on_view_0_and_none_of_their_views_train(data, seen):
    store = views_store(("train",))
    run_probe(store, ProbeConfig("logistic", (KEY,), {"C": 1.0}, data))
    scored = []
    for (X, _), Xe in zip(seen["fit"], seen["predict"]):
        held = decode(Xe)
        items = sorted({i for i, _, _ in held})
        assert held == [(i, 0, k) for i in items for k in range(K)]
        assert not {i for i, _, _ in decode(X)} & set(items)  # no view of a held-out item is trained on
        assert len(X) == (20 - len(items)) * V * K
        scored += items
    assert len(seen["fit"]) == (data.folds or 1) and (data.folds is None or sorted(scored) == list(range(20)))


def test_per_key_heads_and_sweeps_evaluate_view_0(seen):
    store = views_store(keys=(KEY, KEY2))
    results = run_probe_per_key(store, ProbeConfig("linear", (KEY, KEY2), {"epochs": 2}))
    assert len(results) == 2 and len(seen["fit"][0][0]) == 20 * V * K
    assert decode(seen["predict"][-1]) == [(i, 0, k) for i in range(20) for k in range(K)]
    sweep = run_sweep(store, SweepConfig("knn", {"k": 5}, KeySelection(names=(KEY, KEY2))))
    assert [r["key"] for r in sweep.rows] == [KEY, KEY2]
    assert all(decode(Xe) == [(i, 0, k) for i in range(20) for k in range(K)] for Xe in seen["predict"][1:])


def test_a_store_without_views_is_read_and_scored_as_before():
    X, y = coded(0, views=1)  # (N, 1, K, …): drop the view axis
    Xv, yv = coded(1, views=1)
    store = MemoryStore.from_arrays({"train": {KEY: X[:, 0]}, "val": {KEY: Xv[:, 0]}}, {"train": y, "val": yv})
    f = load_features(store, "train", [KEY])
    assert (f.views, f.draws) == (1, K) and np.array_equal(f.rows(np.arange(20)), f.eval_rows(np.arange(20)))
    assert np.array_equal(f.X, X.reshape(20 * K, -1))
    res = run_probe(store, ProbeConfig("logistic", (KEY,), {"C": 1.0}))
    est = LogisticProbe(C=1.0).fit(X.reshape(20 * K, -1), np.repeat(y, K))  # every draw a sample
    proba = est.predict_proba(Xv.reshape(20 * K, -1)).reshape(20, K, -1).mean(1)  # averaged over draws
    assert res.metrics["top1"] == float((proba.argmax(1) == yv).mean())
    np.testing.assert_array_equal(res.trained.predict_store(store, "val")[1], proba)


def test_cka_on_a_views_store_is_cka_on_its_view_0():
    rng = np.random.default_rng(0)
    base = {f"t0090_b{b:02d}_p1": rng.normal(size=(40, 1, 6, 1, 1)).astype(np.float32) for b in (4, 7, 9)}
    arrays = {k: np.concatenate([a, rng.normal(size=(40, V - 1, 6, 1, 1)).astype(np.float32)], 1) for k, a in base.items()}
    y = np.zeros(40, np.int64)
    store = MemoryStore.from_arrays({"val": arrays}, {"val": y}, views=V)
    flat = view0(store)
    a, b = cka_blocks(store, split="val").values, cka_blocks(flat, split="val").values
    assert a.shape == (3, 3) and np.array_equal(a, b)
    assert np.array_equal(cka_stores(store, flat, split="val").values, cka_stores(flat, flat, split="val").values)


# -- stores on disk: dense probes and DifFeed's first pass --------------------------------------------
S = 8


def disk_store(path: Path, masks: dict[str, np.ndarray], maps: dict[str, np.ndarray], identity: dict | None = None,
               items: dict[str, list[Item]] | None = None) -> FeatureStore:  # fmt: skip
    """A FeatureStore with V views: per split masks (N, V, S, S), one array ``t0090_b12_full`` (N, V, C, h, w)."""
    store = create_store(path, {"identity": {"views": V, **(identity or {})}, "class_names": []})
    for split, m in masks.items():
        n = len(m)
        its = items[split] if items else [Item(f"{split}/{i}", f"{split}/{i}.png", 0) for i in range(n)]
        store.create_split(split, [it.id for it in its], [it.path for it in its], [0] * n, unit_size=n)
        key = FeatureKey(90, 12, None)
        shape = maps[split].shape
        lay = ArrayLayout.of_map(*shape[-3:], views=shape[1] if len(shape) >= 5 else 1, draws=shape[2] if len(shape) == 6 else 1)
        store.create_feature_array(split, key, lay, "float32", "output_blocks.1")
        store.backend.write_rows(split, key.name, 0, maps[split])
        store.backend.write_rows(split, "valid", 0, np.ones(n, bool))
        store.backend.write_marker(split, 0, {"keys": [key.name], "start": 0, "stop": n})  # the unit is done
        store.write_masks(split, m)
    store.commit()
    return store


def one_hot_store(path: Path) -> FeatureStore:
    """Masks differ per view; each view's map is the one-hot of that view's mask (3 classes)."""
    rng = np.random.default_rng(0)
    masks = {s: rng.integers(0, 3, size=(n, V, S, S)).astype(np.uint8) for s, n in (("train", 6), ("val", 4))}
    maps = {s: np.moveaxis(np.eye(3, dtype=np.float32)[m], -1, 2) for s, m in masks.items()}  # (N, V, 3, S, S)
    return disk_store(path, masks, maps)


def test_dense_training_pairs_every_view_with_its_mask_and_evaluation_uses_view_0(tmp_path):
    with one_hot_store(tmp_path / "d.zarr") as s:
        stored = s.masks("train")
        train = DenseSource.of(s, "train", ["t0090_b12_full"], every_view=True)
        assert train.samples == 6 * V and train.channels() == [3]
        got = [(m[0].argmax(1), y) for m, y in train.batches(4, None)]
        assert all(torch.equal(a, b) for a, b in got)  # each map lies on its own view's mask
        assert np.array_equal(np.concatenate([y.numpy() for _, y in got]), stored.reshape(-1, S, S))
        test = DenseSource.of(s, "val", ["t0090_b12_full"])
        got = [(m[0].argmax(1), y) for m, y in test.batches(3, np.random.default_rng(0))]
        assert sum(len(y) for _, y in got) == 4 and all(torch.equal(a, b) for a, b in got)
        assert sorted(map(bytes, np.concatenate([y.numpy().astype(np.uint8) for _, y in got]))) == sorted(map(bytes, s.masks("val")[:, 0]))
        res = dense_probe(s, ProbeConfig("dense", ("t0090_b12_full",), {"epochs": 1, "batch_size": 8}))
        assert (res.task, res.train_split, res.n_train, res.extra["views"]) == ("dense", "train", 6, V) and res.metrics["pixels"] == 4 * S * S


def test_dense_sources_refuse_arrays_and_masks_without_the_view_axis(tmp_path):
    from diffprobe.errors import StoreKeyError

    masks = {"train": np.zeros((4, S, S), np.uint8)}
    with disk_store(tmp_path / "a.zarr", masks, {"train": np.zeros((4, V, 3, S, S), np.float32)}) as s:
        with pytest.raises(StoreKeyError, match=r"has 3 views but masks of shape \(8, 8\) per item; expected \(V=3, S, S\)"):
            DenseSource.of(s, "train", ["t0090_b12_full"])
    masks = {"train": np.zeros((4, V, S, S), np.uint8)}
    with disk_store(tmp_path / "b.zarr", masks, {"train": np.zeros((4, V, 2, 3, S, S), np.float32)}) as s:
        with pytest.raises(StoreKeyError, match=r"holds \(V, K, C, h, w\) per item; a dense probe reads \(C, h, w\) maps per view"):
            DenseSource.of(s, "train", ["t0090_b12_full"])


def test_pixel_baseline_trains_on_every_view_made_as_extraction_makes_it(tmp_path):
    items = discover(write_fmnist_masks(tmp_path / "data", per_class_train=1, per_class_val=1)).splits["train"][:4]
    spec = ViewSpec(V, "paper", 0, 32)
    masks = split_masks(list(items), 32, spec)  # (4, V, 32, 32), as extraction writes them
    maps = np.zeros((4, V, 1, 2, 2), np.float32)
    with disk_store(tmp_path / "p.zarr", {"train": masks}, {"train": maps}, items={"train": list(items)}) as s:
        params = np.stack([spec.params(it.id) for it in items])
        s.write_view_params("train", "paper", spec.augmentation.fields, 32, 0, params)
        src = DenseSource.of(s, "train", [PIXELS], every_view=True)
        [((px,), y)] = list(src.batches(4 * V, None))
        want = np.stack([spec.images(decode_image(it.path), it.id) for it in items]).reshape(-1, 3, 32, 32)
        assert np.array_equal(px.numpy(), want) and np.array_equal(y.numpy(), masks.reshape(-1, 32, 32))
        grey = px.numpy().mean(1)
        for g, m in zip(grey, masks.reshape(-1, 32, 32)):  # the garment (mask > 0) is where the view is bright
            assert g[m > 0].mean() > g[m == 0].mean() + 0.5
        [((px0,), y0)] = list(DenseSource.of(s, "train", [PIXELS]).batches(4, None))
        assert np.array_equal(px0.numpy(), want.reshape(4, V, 3, 32, 32)[:, 0]) and np.array_equal(y0.numpy(), masks[:, 0])


def test_difffeed_reads_its_first_pass_from_view_0_of_a_views_store(tmp_path):
    ident = {"model": "m", "adm_flags": {}, "checkpoint_sha256": "x", "class_label": None, "seed": 0, "draws": 1}
    maps = np.random.default_rng(0).normal(size=(5, V, 2, 4, 4)).astype(np.float32)
    with disk_store(tmp_path / "f.zarr", {"train": np.zeros((5, V, S, S), np.uint8)}, {"train": maps}, ident) as s:
        items = [Item(f"train/{i}", "", 0) for i in (3, 1)]
        found = stored_pass1(s, "train", items, 90, [12], ident, draws=1)
        assert found is not None
        arrays, rows, draw_axis = found
        assert not draw_axis and arrays[12].shape == (5, 2, 4, 4) and rows.tolist() == [3, 1]
        got = ImageSet(tuple(items), arrays, rows).pass1_batch(np.arange(2), 0, torch.device("cpu"))
        assert got is not None and np.array_equal(got[12].numpy(), maps[[3, 1], 0])
