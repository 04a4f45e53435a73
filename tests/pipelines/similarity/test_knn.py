"""k-NN metrics (mutual k-NN, CKNNA, cycle k-NN): the paper's formulas, the tie rule, invariances, refusals."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from diffprobe.errors import ConfigError, DiffprobeError
from diffprobe.pipelines.similarity.config import NEIGHBOUR_NAMES
from diffprobe.pipelines.similarity.math import (
    NEIGHBOURS,
    UndefinedSimilarityError,
    cknna,
    cycle_knn,
    cycle_knn_tables,
    mutual_knn,
    neighbour_table,
    top_k,
)
from tests.pipelines.similarity import reference as ref
from tests.pipelines.similarity.reference import orthogonal, related

PROPS = settings(max_examples=10, deadline=None)
METRICS = {"mutual": (mutual_knn, ref.mutual_knn), "cknna": (cknna, ref.cknna), "cycle": (cycle_knn, ref.cycle_knn)}


def test_neighbour_rule_names_match_the_registry():
    assert tuple(NEIGHBOURS.names()) == NEIGHBOUR_NAMES


@pytest.mark.parametrize("rule", NEIGHBOUR_NAMES)
@pytest.mark.parametrize("name", sorted(METRICS))
@pytest.mark.parametrize("k", [1, 5, 17])
def test_matches_the_papers_formula(name, k, rule):
    fn, reference = METRICS[name]
    x, y = related(90, 12, 7, seed=k)
    assert fn(x, y, k, rule) == pytest.approx(reference(x, y, k, rule), abs=1e-12)


@pytest.mark.parametrize("rule", NEIGHBOUR_NAMES)
def test_tables_hold_the_exact_neighbour_sets_for_any_tiling(rule):
    x, _ = related(70, 6, 3, seed=3)
    sets = ref.knn_sets(x, 6, rule)
    dense = neighbour_table(torch.from_numpy(x), 6, rule)
    assert [set(r) for r in dense.index.tolist()] == sets
    for tile in (1, 9, 69):
        t = neighbour_table(torch.from_numpy(x), 6, rule, tile_rows=tile)
        assert torch.equal(t.index, dense.index) and torch.allclose(t.kernel, dense.kernel, rtol=0, atol=1e-13)


def test_ties_go_to_the_smaller_index():
    score = torch.tensor([[1.0, 3, 3, 3, 2, 3], [5, 4, 4, 0, 4, 1], [0, 1, 2, 3, 4, 5]], dtype=torch.float64)
    assert top_k(score, 2).tolist() == [[1, 2], [0, 1], [4, 5]]
    assert top_k(score, 4).tolist() == [[1, 2, 3, 5], [0, 1, 2, 4], [2, 3, 4, 5]]


@pytest.mark.parametrize("rule", NEIGHBOUR_NAMES)
def test_tie_heavy_integer_features_give_the_reference_sets_at_every_tiling(rule):
    """Small integers: products are exact, so many scores tie exactly and the tie rule decides."""
    x = np.random.default_rng(0).integers(-1, 2, size=(60, 3)).astype(np.float64)
    x = x[np.abs(x).sum(1) > 0]  # cosine needs non-zero rows
    sets = ref.knn_sets(x, 5, rule)
    for tile in (None, 4, 13):
        t = neighbour_table(torch.from_numpy(x), 5, rule, tile_rows=tile)
        assert [set(r) for r in t.index.tolist()] == sets


def test_self_similarity_and_symmetry():
    x, y = related(80, 10, 6)
    assert mutual_knn(x, x, 5) == 1.0 and cknna(x, x, 5) == pytest.approx(1.0, abs=1e-12)
    assert mutual_knn(x, y, 5) == mutual_knn(y, x, 5)
    assert cknna(x, y, 5) == pytest.approx(cknna(y, x, 5), abs=1e-12)
    assert 0 <= cycle_knn(x, y, 5) <= 1 and -1 <= cknna(x, y, 5) <= 1


def test_cycle_knn_walks_forward_in_y_and_back_in_x_in_bounded_blocks():
    x, y = related(50, 5, 4, seed=2)
    tx, ty = (neighbour_table(torch.from_numpy(a), 4) for a in (x, y))
    assert cycle_knn_tables(tx, ty, max_entries=16) == cycle_knn_tables(tx, ty) == ref.cycle_knn(x, y, 4)
    assert cycle_knn_tables(ty, tx) == ref.cycle_knn(y, x, 4)


@PROPS
@given(st.integers(0, 10_000), st.floats(1e-3, 1e3), st.sampled_from(NEIGHBOUR_NAMES), st.sampled_from(sorted(METRICS)))
def test_invariant_to_orthogonal_transforms_and_isotropic_scaling(seed, scale, rule, name):
    fn, _ = METRICS[name]
    x, y = related(40, 6, 5, seed=seed)
    moved = scale * x @ orthogonal(6, seed + 1)
    assert fn(moved, y, 4, rule) == pytest.approx(fn(x, y, 4, rule), abs=1e-9)
    assert fn(x, scale * y @ orthogonal(5, seed + 2), 4, rule) == pytest.approx(fn(x, y, 4, rule), abs=1e-9)


def test_euclidean_neighbours_are_also_translation_invariant():
    x, y = related(50, 6, 5, seed=4)
    for fn in (mutual_knn, cycle_knn):
        assert fn(x + 7.0, y, 5, "euclidean") == fn(x, y, 5, "euclidean")


@pytest.mark.parametrize("k", [0, 30, 31])
def test_k_outside_1_to_n_minus_1_is_refused(k):
    x, y = related(30, 4, 4)
    with pytest.raises(UndefinedSimilarityError, match=r"1 ≤ k ≤ N - 1 = 29.*smaller k"):
        mutual_knn(x, y, k)


def test_degenerate_inputs_are_refused_with_what_to_do():
    x, y = related(30, 4, 4)
    with pytest.raises(UndefinedSimilarityError, match="constant across all 30 items"):
        cknna(np.ones((30, 4)), y, 3)
    zero = x.copy()
    zero[7] = 0
    with pytest.raises(UndefinedSimilarityError, match=r"all-zero features \(first: item 7\).*neighbours='euclidean'"):
        mutual_knn(zero, y, 3)
    assert 0 <= mutual_knn(zero, y, 3, "euclidean") <= 1
    with pytest.raises(ConfigError, match="same number of items"):
        cycle_knn(x, y[:-1], 3)
    with pytest.raises(DiffprobeError, match="unknown neighbour rule 'cosin'.*did you mean 'cosine'"):
        mutual_knn(x, y, 3, "cosin")
    with pytest.raises(DiffprobeError, match="NaN or inf"):
        mutual_knn(np.where(np.arange(30)[:, None] == 3, np.nan, x), y, 3)
