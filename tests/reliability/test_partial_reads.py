"""Silently wrong results: no reader scores a half-written store by default.

A probe on a store whose eval split was partly written (after a kill, or while extraction runs)
printed top-1 100% over 16 of 40 items with exit 0; with no finished eval unit the error was a
misleading "split 'val' has no labels". Units 1 and 2 of val lose their done markers here while
their rows stay: exactly what a reader sees while a run writes them (data first, marker last).
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

import diffprobe
from tests.pipelines.extraction.test_faults import assert_identical
from tests.reliability.conftest import KEY, cli, tiny_args

MISSING = "is not fully extracted: 2 of 3 units (12 of 20 items) are not done"


def half_written(store, units=(1, 2)):
    for u in units:
        (store / "_progress" / "val" / f"unit-{u:06d}.json").unlink()
    return store


@pytest.fixture(scope="module")
def saved_probe(tiny_store, tmp_path_factory):
    saved = tmp_path_factory.mktemp("saved") / "probe"
    code, text = cli("probe", "logistic", tiny_store, "--key", KEY, "--save", saved)
    assert code == 0, text
    return saved


def with_masks(store):
    with diffprobe.open_store(store, mode="a") as s:
        for split in s.splits:
            s.write_masks(split, (np.arange(s.n_items(split) * 32 * 32).reshape(-1, 32, 32) % 3).astype(np.uint8))
    return store


def read(reader, store, tmp_path, saved, *extra):
    """Run one reader on the store's val split: (exit code, output)."""
    if reader == "probe":
        return cli("probe", "logistic", store, "--key", KEY, "--json", *extra)
    if reader == "sweep":
        return cli("sweep", store, "--key", KEY, "--out", tmp_path / "sweep", *extra)
    if reader == "dense":
        return cli("probe", "dense", with_masks(store), "--key", KEY, "--epochs", "1", "--json", *extra)
    if reader == "cka":
        return cli(
            "cka", "stores", store, store, "--split", "val", "--keys-a", KEY, "--keys-b", "t0050_b03_p1", "--out", tmp_path / "cka", *extra
        )
    return cli("probe", "predict", saved, store, "--split", "val", *extra)


@pytest.mark.parametrize("reader", ["probe", "sweep", "dense", "cka", "predict"])
def test_a_half_written_split_is_an_error_unless_allowed(reader, tiny, tmp_path, saved_probe):
    store = half_written(tiny)
    code, text = read(reader, store, tmp_path, saved_probe)
    assert code == 1, text
    assert f"split 'val' of {store} {MISSING}" in text and "re-running the same `diffprobe extract` command" in text, text
    assert "--allow-incomplete to use only its 8 finished items" in text, text
    code, text = read(reader, store, tmp_path, saved_probe, "--allow-incomplete")
    assert code == 0, text
    if reader in ("probe", "dense"):
        doc = json.loads(text[text.index("{") :])
        assert doc["complete"] is False and doc["coverage"]["val"] == {"complete": False, "items": 20, "items_read": 8}, doc["coverage"]
        assert doc["n_eval"] <= 8
    elif reader == "cka":
        doc = json.loads((tmp_path / "cka" / "cka.json").read_text())
        assert doc["complete"] is False and doc["n_items"] == 8 and "INCOMPLETE" in text
    elif reader == "sweep":
        rows = (tmp_path / "sweep" / "results.csv").read_text().splitlines()
        assert rows[0].split(",")[-2] == "complete" and rows[1].split(",")[-2] == "False", rows
    else:
        assert "INCOMPLETE" in text and "predicted 8 items" in text, text


def test_no_finished_eval_unit_says_so_not_no_labels(tiny):
    store = half_written(tiny, (0, 1, 2))
    for extra in ((), ("--allow-incomplete",)):
        code, text = cli("probe", "logistic", store, "--key", KEY, *extra)
        assert code == 1 and "3 of 3 units (20 of 20 items) are not done" in text and "No item of it is finished yet" in text, text
        assert "has no labels" not in text


def test_difffeed_never_reads_pass_one_from_unfinished_units(tiny, tiny_manifest, caplog):
    from diffprobe.extract.sources.discover import discover
    from diffprobe.probes.images import stored_pass1

    store = half_written(tiny)
    items = discover(str(tiny_manifest)).splits["val"]
    with diffprobe.open_store(store) as s, caplog.at_level(logging.INFO):
        assert stored_pass1(s, "val", items[:8], 50, [3], s.attrs["identity"], 1) is not None  # unit 0 is done
        assert stored_pass1(s, "val", items, 50, [3], s.attrs["identity"], 1) is None
    assert "12 of the items are in units its extraction has not finished" in caplog.text


def test_finishing_the_run_gives_the_undisturbed_store(tiny, tiny_store, tiny_manifest):
    store = half_written(tiny)
    code, text = cli(*tiny_args(tiny_manifest, store))
    assert code == 0 and "units: 2 run, 4 already done" in text, text
    assert_identical(store, tiny_store)
    code, text = cli("probe", "logistic", store, "--key", KEY)
    assert code == 0 and "eval val (20)" in text and "INCOMPLETE" not in text, text
