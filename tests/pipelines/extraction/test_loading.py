"""One loader for the whole run: its batches cover every split in order, never straddle two units,
and its worker processes start once, before any unit is done."""

from __future__ import annotations

import numpy as np

import diffprobe
from diffprobe.pipelines.extraction.loading import run_batches
from diffprobe.store.progress import UnitTask
from tests.helpers import extract_config, read_all


def test_the_runs_batches_cover_each_split_in_order_and_never_straddle_units():
    by_split = {"train": [UnitTask("train", 0, 0, 10, ()), UnitTask("train", 2, 20, 25, ())], "val": [UnitTask("val", 1, 8, 16, ())]}
    batches = run_batches(by_split, 4)
    assert batches == [
        [("train", 0), ("train", 1), ("train", 2), ("train", 3)], [("train", 4), ("train", 5), ("train", 6), ("train", 7)],
        [("train", 8), ("train", 9)], [("train", 20), ("train", 21), ("train", 22), ("train", 23)], [("train", 24)],
        [("val", 8), ("val", 9), ("val", 10), ("val", 11)], [("val", 12), ("val", 13), ("val", 14), ("val", 15)],
    ]  # fmt: skip


def test_one_loader_serves_every_split_and_its_workers_start_once(small_manifest, small_store, tmp_path, monkeypatch):
    """Before, each split started its own loader workers, so a Ctrl-C after the first split's units could
    land while the next split's workers forked (tracebacks after "interrupted"). Now they start once;
    the store equals one decoded in the main process."""
    from torch.utils.data import dataloader

    starts = []
    real = dataloader._MultiProcessingDataLoaderIter.__init__
    monkeypatch.setattr(dataloader._MultiProcessingDataLoaderIter, "__init__", lambda self, loader: (starts.append(1), real(self, loader))[1])
    cfg = extract_config(small_manifest, tmp_path / "workers.zarr", loader_workers=1, unit_size=32, timesteps=(50,), pools=(2,))
    diffprobe.extract_features(cfg, progress=False)
    assert len(starts) == 1, "one set of loader workers for both splits"
    got, want = read_all(tmp_path / "workers.zarr"), read_all(small_store)  # (its images decoded in the main process)
    assert {split for split, _ in got} == {"train", "val"} and len(got) == 4 and got.keys() <= want.keys()
    assert all(np.array_equal(got[k], want[k], equal_nan=True) for k in got)
