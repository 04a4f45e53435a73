"""One selection and one layout for every reader: KeySelection resolved against what a split stores,
ArrayLayout recorded once and read back (older stores through their dimension names)."""

from __future__ import annotations

import numpy as np
import pytest

from diffprobe.errors import StoreError, StoreKeyError
from diffprobe.store.arrays import ArrayLayout
from diffprobe.store.select import ALL, KeySelection, resolve_selection
from tests.probes.support import blobs_store


@pytest.fixture(scope="module")
def store():
    return blobs_store()  # t ∈ {10, 90}, block ∈ {4, 7}, pool ∈ {1, 2, full}


def names(store, sel, split="train"):
    return [k.name for k in resolve_selection(store, split, sel)]


def test_given_values_are_a_product_and_each_must_be_stored(store):
    assert names(store, KeySelection((90,), (7,), (2,))) == ["t0090_b07_p2"]
    assert names(store, KeySelection((10, 90), (7,), (None,))) == ["t0010_b07_full", "t0090_b07_full"]
    with pytest.raises(StoreKeyError, match=r"unknown t 150 in split 'train'; valid: t ∈ \{10, 90\}, block ∈ \{4, 7\}, pool ∈ \{1, 2, full\}"):
        names(store, KeySelection((150,), (7,), (2,)))
    with pytest.raises(StoreKeyError, match=r"block\(s\) 9 are not stored in split 'train'; stored blocks: 4, 7"):
        names(store, KeySelection((90,), (9,), (2,)))


def test_an_axis_left_out_is_the_only_stored_value_and_all_is_spelled(store):
    with pytest.raises(StoreKeyError, match="expected a t .the store has several: 10, 90.; pass --t"):
        names(store, KeySelection((), (7,), (2,)))
    with pytest.raises(StoreKeyError, match="expected a t and a pool .*t: 10, 90; pool: 1, 2, full.; pass --t and --pool"):
        names(store, KeySelection((), (7,), ()))
    every = names(store, KeySelection(ALL, (7,), (2,)))
    assert every == ["t0010_b07_p2", "t0090_b07_p2"]
    assert len(names(store, KeySelection.everything())) == 12 == len(store.feature_keys("train"))
    assert names(store, KeySelection((), (), (1,)).fill(ALL)) == [k.name for k in store.feature_keys("train") if k.pool == 1]


def test_names_and_patterns(store):
    assert names(store, KeySelection(names=("t0090_*_p1",))) == ["t0090_b04_p1", "t0090_b07_p1"]
    with pytest.raises(StoreKeyError, match="unknown key 'nope' in split 'train'; valid: "):
        names(store, KeySelection(names=("nope",)))
    both = names(store, KeySelection((90,), (4,), (1,), names=("t0090_b07_p1",)))
    assert both == ["t0090_b07_p1", "t0090_b04_p1"]  # names first, then the axes


def test_values_are_typed_once():
    sel = KeySelection(90, "output_blocks.1", "full")
    assert (sel.t, sel.blocks, sel.pools) == ((90,), ("output_blocks.1",), (None,))
    with pytest.raises(StoreKeyError, match="integer timesteps"):
        KeySelection(("90",))
    with pytest.raises(StoreKeyError, match="or 'all' alone"):
        KeySelection((90, ALL))
    assert KeySelection(ALL).to_dict() == {"t": "all", "blocks": [], "pools": [], "names": []}


def test_module_paths_resolve_against_the_recorded_block_table(small_store):
    import diffprobe

    with diffprobe.open_store(small_store) as s:
        table = s.attrs["block_table"]
        path13 = next(b["path"] for b in table if b["number"] == 13)
        assert names(s, KeySelection((50,), (path13,), (2,))) == ["t0050_b13_p2"]
        with pytest.raises(StoreKeyError, match=r"block\(s\) 12 are not stored .*stored blocks: 10 \(.*\), 13 \("):
            names(s, KeySelection((50,), (12,), (2,)))
        with pytest.raises(StoreKeyError, match="unknown block 'output_blocks.99'"):
            names(s, KeySelection((50,), ("output_blocks.99",), (2,)))


def test_layouts_are_recorded_once_and_older_stores_fall_back_to_their_dims():
    lay = ArrayLayout.of_map(128, 8, 8, views=2, draws=3)
    assert lay.item_shape == (2, 3, 128, 8, 8) and lay.axes_text() == "(V, K, C, h, w)" and lay.n_views == 2
    assert ArrayLayout.from_attrs(lay.to_attrs()) == lay
    assert ArrayLayout.from_dims(("item", "view", "draw", "c128", "h8_8", "w8_8"), (5, *lay.item_shape)) == lay
    assert ArrayLayout.recorded("t0090_b07_p2", (5, 128, 8, 8), {"kind": "feature"}, ("item", "c128", "h2_8", "w2_8")) == ArrayLayout(0, 0, 128, 8, 8)
    flat = ArrayLayout.imported((5, 768))
    assert flat.item_shape == (768,) and flat.map_shape == (768, 1, 1) and flat.width_per_row == 768
    with pytest.raises(StoreError, match="has shape .*but its recorded layout"):
        ArrayLayout.recorded("t0090_b07_p2", (5, 64, 8, 8), {"layout": lay.without_views().to_attrs()})
    with pytest.raises(StoreError, match=r"imported array of shape \(N, D\), \(N, C, H, W\)"):
        ArrayLayout.imported((5, 3, 7))
    a = np.zeros((4, 2, 3))
    assert lay.first_view(a).shape == (4, 3) and ArrayLayout(0, 0, 1, 1, 1).first_view(a) is a
