"""A CPU extraction computes several forward batches at once, each on its own thread: the store it
writes is byte for byte the one of one forward at a time, an error in a stream stops the run with
its finished units kept, and the process's thread count is restored."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

import diffprobe
from diffprobe.extract.compute import FeatureComputer
from diffprobe.threads import CORES_VAR
from tests.helpers import extract_config, read_all


def extract(manifest, out, cores: int, monkeypatch, **kw):
    monkeypatch.setenv(CORES_VAR, str(cores))
    # 8 images per forward and 32 per unit: four forwards per unit, so two streams interleave within
    # and across units; two timesteps fused into each forward
    return diffprobe.extract_features(extract_config(manifest, out, forward_batch=8, unit_size=32, **kw), progress=False)


def digests(path) -> dict:
    """{(split, unit): {array: digest of the unit's rows}} from the done markers."""
    with diffprobe.open_store(path) as s:
        return {(sp, u): m["digests"] for sp in s.splits for u, m in s.markers(sp).items()}


@pytest.fixture(scope="module")
def one_stream(small_manifest, tmp_path_factory):
    """The store of one forward at a time, which both tests compare with."""
    with pytest.MonkeyPatch.context() as m:
        out = tmp_path_factory.mktemp("streams") / "one.zarr"
        extract(small_manifest, out, 1, m)
    return out


def test_two_streams_store_the_bytes_of_one(small_manifest, one_stream, tmp_path, monkeypatch, caplog):
    before = torch.get_num_threads()
    with caplog.at_level(logging.INFO, logger="diffprobe.pipelines.extraction.streams"):
        extract(small_manifest, tmp_path / "two.zarr", 2, monkeypatch)
    assert "2 forward streams" in caplog.text
    assert torch.get_num_threads() == before, "the streams' thread count leaked into the process"
    one, two = read_all(one_stream), read_all(tmp_path / "two.zarr")
    assert one.keys() == two.keys() and len(one) == 16  # 2 splits × 2 t × 2 blocks × 2 pools
    for k in one:
        assert one[k].dtype == two[k].dtype and one[k].tobytes() == two[k].tobytes(), k
    assert digests(one_stream) == digests(tmp_path / "two.zarr") and len(digests(one_stream)) == 6  # units: 4 train, 2 val


def test_an_error_in_a_stream_stops_the_run_and_a_rerun_completes_it(small_manifest, one_stream, tmp_path, monkeypatch):
    launch = FeatureComputer.launch
    calls = []

    def failing(self, *args, **kw):
        calls.append(1)
        if len(calls) == 9:  # the ninth forward: two units (four forwards each) are complete by then
            raise RuntimeError("a forward failed")
        return launch(self, *args, **kw)

    monkeypatch.setattr(FeatureComputer, "launch", failing)
    out = tmp_path / "s.zarr"
    with pytest.raises(RuntimeError, match="a forward failed"):
        extract(small_manifest, out, 2, monkeypatch)
    with diffprobe.open_store(out) as s:
        kept = len(s.markers("train"))
    assert kept >= 1, "the units finished before the error were thrown away"
    monkeypatch.setattr(FeatureComputer, "launch", launch)
    summary = extract(small_manifest, out, 2, monkeypatch)
    assert summary.units_skipped == kept and summary.units_run == 6 - kept
    got, want = read_all(out), read_all(one_stream)
    assert all(np.array_equal(got[k], want[k]) for k in want) and got.keys() == want.keys()
