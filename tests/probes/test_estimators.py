"""The estimator contract of every probe, on small synthetic blobs (fast)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV

from diffprobe.probes import create_probe, probe_names
from diffprobe.probes.errors import LabelError, ProbeError
from tests.probes.support import blobs

FAST = {
    "logistic": {"Cs": (0.01, 0.1, 1.0)},
    "linear": {"epochs": 15, "lr": 0.05, "schedule": "constant"},
    "knn": {"k": 5},
    "attention": {"dim": 16, "heads": 2, "depth": 1, "epochs": 15, "optimizer": "adamw", "lr": 3e-3, "batch_size": 25,
                  "schedule": "constant", "device": "cpu"},
    "difformer": {"dim": 16, "heads": 2, "depth": 1, "epochs": 15, "optimizer": "adamw", "lr": 3e-3, "batch_size": 25,
                  "schedule": "constant", "device": "cpu"},
}


@pytest.fixture(scope="module")
def data():
    X, y = blobs(25, 4, (6, 2, 2), sep=3.0, seed=1)
    Xt, yt = blobs(15, 4, (6, 2, 2), sep=3.0, seed=2)
    return X, y, Xt, yt


def test_registry_lists_every_probe():
    assert probe_names() == ["logistic", "linear", "knn", "attention", "difformer"]
    with pytest.raises(ProbeError, match="unknown probe 'svm'; valid: logistic, linear"):
        create_probe("svm")
    with pytest.raises(ProbeError, match="unknown parameter.*lr_max.*valid:"):
        create_probe("linear", lr_max=1)


@pytest.mark.parametrize("name", list(FAST))
def test_estimator_contract(name, data):
    X, y, Xt, yt = data
    est = create_probe(name, **FAST[name])
    with pytest.raises(NotFittedError):
        est.predict(Xt)
    cl = clone(est)
    assert cl.get_params() == est.get_params()
    assert est.fit(X, y) is est
    learned = [k for k in vars(est) if k.endswith("_") and not k.startswith("_")]
    assert "classes_" in learned and "n_features_in_" in learned
    assert not hasattr(cl, "classes_")  # clone is unfitted
    proba = est.predict_proba(Xt)
    assert proba.shape == (len(Xt), 4)
    np.testing.assert_allclose(proba.sum(1), 1.0, atol=1e-5)
    assert set(est.predict(Xt)) <= set(range(4))
    assert est.score(Xt, yt) > 0.8, f"{name} should separate the blobs"
    again = clone(est).fit(X, y)
    np.testing.assert_allclose(again.predict_proba(Xt), proba, atol=1e-6, err_msg="deterministic under random_state")


def test_string_labels_and_unseen_feature_width(data):
    X, y, Xt, _ = data
    names = np.array(["cat", "dog", "emu", "yak"])[y]
    est = create_probe("logistic", C=1.0).fit(X.reshape(len(X), -1), names)
    assert set(est.predict(Xt.reshape(len(Xt), -1))) <= set(names)
    with pytest.raises(ProbeError, match="X has 10 features, but .* is expecting 24 features as input"):
        est.predict(Xt.reshape(len(Xt), -1)[:, :10])
    with pytest.raises(LabelError, match="at least 2 classes"):
        create_probe("knn").fit(X, np.zeros(len(X)))


def test_grid_search_over_logistic(data):
    X, y, _, _ = data
    gs = GridSearchCV(create_probe("logistic"), {"C": [0.01, 1.0]}, cv=2).fit(X.reshape(len(X), -1), y)
    assert gs.best_params_["C"] in (0.01, 1.0)


@pytest.mark.parametrize("name", ["logistic", "knn", "linear"])
def test_lazy_input_streams_to_the_same_answer(name, data):
    """Chunked (dask) input is streamed; full-batch probes give the same model, SGD an equally good one."""
    da = pytest.importorskip("dask.array")
    X, y, Xt, yt = data
    X2, Xt2 = X.reshape(len(X), -1), Xt.reshape(len(Xt), -1)
    params = {**FAST[name], "chunk_size": 16}
    eager = create_probe(name, **params).fit(X2, y)
    lazy = create_probe(name, **params).fit(da.from_array(X2, chunks=16), y)
    if name == "linear":  # minibatches are shuffled within chunks: another (equally valid) trajectory
        assert lazy.score(da.from_array(Xt2, chunks=7), yt) >= eager.score(Xt2, yt) - 0.1
        return
    np.testing.assert_allclose(lazy.predict_proba(da.from_array(Xt2, chunks=7)), eager.predict_proba(Xt2), atol=2e-3)


def test_logistic_matches_its_objective_optimum(data):
    """At a fixed C the solution satisfies ∇f = 0: W = −C·(P − Y)ᵀX (the row-space identity).
    The solver on X as given: standardisation off."""
    X, y, _, _ = data
    X2 = X.reshape(len(X), -1)
    est = create_probe("logistic", C=0.5, tol=1e-6, standardize=False).fit(X2, y)
    logits = X2 @ est.coef_.T + est.intercept_
    P = np.exp(logits - logits.max(1, keepdims=True))
    P /= P.sum(1, keepdims=True)
    G = P - np.eye(4)[y]
    np.testing.assert_allclose(est.coef_, -0.5 * G.T @ X2, atol=2e-3)
    np.testing.assert_allclose(G.sum(0), 0, atol=2e-3)


def test_logistic_row_space_reduction_is_exact():
    """D > N takes the reduced path; it must find the same model as the direct D-dim solve."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 300)).astype(np.float32)
    y = np.arange(40) % 3
    solver = {"tol": 1e-7, "standardize": False}
    reduced = create_probe("logistic", C=0.3, **solver).fit(X, y)
    direct = create_probe("logistic", C=0.3, **solver).fit(np.tile(X, (3, 1)), np.tile(y, 3))  # N > D: direct path
    # Tripling the rows equals C × 3 on the original rows (the penalty is 1/(C·N)); compare at equal C·N.
    tripled = create_probe("logistic", C=0.1, **solver).fit(np.tile(X, (3, 1)), np.tile(y, 3))
    np.testing.assert_allclose(tripled.coef_, reduced.coef_, atol=5e-3)
    assert direct.coef_.shape == reduced.coef_.shape == (3, 300)


def test_multi_head_linear_trains_each_head_as_if_alone():
    """Heads trained together (summed losses, own lr groups) follow exactly the single-head trajectories."""
    from diffprobe.probes.linear import MultiHeadLinear, _summed_ce
    from diffprobe.probes.optim import TrainConfig
    from diffprobe.probes.training import train_module

    X, y = blobs(20, 3, (12,), seed=3)
    cfg = TrainConfig(lr=0.1, epochs=3, batch_size=16, seed=5)
    torch.manual_seed(0)
    joint = MultiHeadLinear([(0, 6), (6, 12)], [0, 0, 1], 3)
    lrs = [0.1, 0.01, 0.05]
    alone = []
    for h, (lo, hi) in zip(range(3), [(0, 6), (0, 6), (6, 12)]):
        m = MultiHeadLinear([(lo, hi)], [0], 3)
        m.layers[0].load_state_dict(joint.layers[h].state_dict())
        alone.append(m)
    train_module(joint, [{"params": list(layer.parameters()), "lr": lr} for layer, lr in zip(joint.layers, lrs)], X, y, cfg, _summed_ce, torch.device("cpu"))
    for h, m in enumerate(alone):
        train_module(m, [{"params": list(m.parameters()), "lr": lrs[h]}], X, y, cfg, _summed_ce, torch.device("cpu"))
        torch.testing.assert_close(m.layers[0].weight, joint.layers[h].weight, atol=1e-5, rtol=1e-5)


def test_linear_probe_picks_a_learning_rate_and_groups(data):
    X, y, Xt, yt = data
    X2, Xt2 = X.reshape(len(X), -1), Xt.reshape(len(Xt), -1)
    est = create_probe("linear", lr=(1e-4, 0.05), epochs=10, schedule="constant", feature_groups=(12, 12)).fit(X2, y)
    assert len(est.heads_) == 4 and len(est.best_lr_) == 2
    assert est.predict_proba_groups(Xt2).shape == (2, len(Xt2), 4)
    assert est.best_lr_[0] == 0.05
    with pytest.raises(ProbeError, match="feature_groups of positive sizes summing to 24"):
        create_probe("linear", feature_groups=(5, 5)).fit(X2, y)


def test_knn_chunking_is_exact(data):
    X, y, Xt, _ = data
    a = create_probe("knn", k=7, chunk_size=4096).fit(X, y).predict_proba(Xt)
    b = create_probe("knn", k=7, chunk_size=5).fit(X, y).predict_proba(Xt)
    np.testing.assert_allclose(a, b, atol=1e-6)
    one = create_probe("knn", k=1).fit(X, y)
    assert one.score(X, y) == 1.0


def test_paper_head_sizes_on_the_meta_device():
    from diffprobe.probes.heads import AttentionHead, DifFormerHead, count_parameters

    with torch.device("meta"):
        att = AttentionHead((1024, 16, 16), 1000, dim=1024, heads=8, depth=2)
        dif = DifFormerHead([(1024, 8, 8), (1024, 16, 16), (512, 64, 64)] * 3, [90] * 3 + [150] * 3 + [300] * 3, [19, 24, 30] * 3, 1000)
    assert count_parameters(att) == pytest.approx(27.8e6, rel=0.002)
    assert count_parameters(dif) == pytest.approx(31.8e6, rel=0.002)
    assert att.encoder.cls.shape == (1, 1, 1024)
    x = torch.empty(2, 1024 * 64 + 1024 * 256 + 512 * 64 * 64, device="meta")
    assert dif(torch.cat([x, x, x], 1)).shape == (2, 1000)
    tokens = dif.tokenizers["30"](torch.empty(2, 512, 64, 64, device="meta"))
    assert tokens.shape == (2, 256, 1024)  # 64×64 pooled to 16×16


def test_attention_head_structure():
    from diffprobe.probes.heads import AttentionHead

    head = AttentionHead((8, 4, 4), 5, dim=16, heads=2, depth=2)
    assert torch.count_nonzero(head.encoder.cls) == 0, "zero-initialised CLS token"
    assert head.encoder.blocks[0].attn.qkv.bias is None, "no qkv bias"
    assert not any("pos" in n for n, _ in head.named_parameters()), "no positional embedding"
    assert head.tokenizer.norm.normalized_shape == (8, 4, 4), "LayerNorm over (C, H, W)"
    assert head(torch.randn(3, 8 * 16)).shape == (3, 5)


def test_difformer_layout_errors(data):
    X, y, _, _ = data
    with pytest.raises(ProbeError, match="expected X with 999 features"):
        create_probe("difformer", input_shapes=[(999, 1, 1)], device="cpu", epochs=1).fit(X, y)
    with pytest.raises(ProbeError, match="expected 2 input_times"):
        create_probe("difformer", input_shapes=[(6, 1, 2), (6, 1, 2)], input_times=[0], device="cpu").fit(X, y)


def test_the_c_sweep_of_streamed_rows_streams_its_held_out_rows_to_the_same_scores(monkeypatch):
    """Rows too large to hold leave the C sweep's held-out rows on disk too (val_fraction of X is not
    copied into memory); each C's validation accuracy is that of the rows held in memory."""
    da = pytest.importorskip("dask.array")
    import diffprobe.probes.logistic as logistic

    X, y = blobs(60, 4, (6, 2, 2), sep=0.6, seed=3)  # overlapping classes: accuracies differ between Cs
    X2 = X.reshape(len(X), -1)
    params = {"Cs": (0.001, 0.01, 0.1, 1.0, 10.0), "patience": 5, "chunk_size": 16, "val_fraction": 0.25}
    eager = create_probe("logistic", **params).fit(X2, y)
    to_tensor = logistic.to_tensor

    def held_only_in_memory(rows, *args, **kw):
        assert isinstance(rows, (np.ndarray, torch.Tensor)), "a lazy array was read whole"
        return to_tensor(rows, *args, **kw)

    monkeypatch.setattr(logistic, "to_tensor", held_only_in_memory)
    lazy = create_probe("logistic", **params).fit(da.from_array(X2, chunks=16), y)
    held = 60  # 25% of each class's 60 rows
    assert lazy.val_scores_.keys() == eager.val_scores_.keys() and len(set(eager.val_scores_.values())) > 1
    for C, acc in eager.val_scores_.items():  # the fits stream in another summation order: one row may flip
        assert abs(lazy.val_scores_[C] - acc) <= 1 / held + 1e-9, C
    assert lazy.C_ == eager.C_
