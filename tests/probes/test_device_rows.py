"""Training rows held on the GPU: read from the store once, not at every L-BFGS evaluation or epoch."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import torch

import diffprobe.probes.arrays as arrays
from diffprobe.probes import DataConfig, ProbeConfig, run_probe
from tests.probes.support import GOOD_KEY, real_store


def test_fill_copies_chunked_rows_exactly():
    X = np.random.default_rng(0).normal(size=(103, 4, 3)).astype(np.float16)
    got = arrays.fill(da.from_array(X, chunks=(10, 4, 3)), torch.device("cpu"), chunk=16)
    assert got.dtype == torch.float32 and got.shape == (103, 4, 3)
    assert np.array_equal(got.numpy(), X.astype(np.float32))


def test_rows_go_to_a_gpu_only_when_they_fit(monkeypatch):
    """The policy, without a GPU: a CPU never holds a copy; CUDA does when the rows take at most
    DEVICE_SHARE of its free memory, and streams them otherwise."""
    X = da.zeros((1000, 250), chunks=(100, 250), dtype=np.float16)  # 1 MB as float32
    filled = []
    monkeypatch.setattr(arrays, "fill", lambda X, device, chunk: filled.append((X.shape, str(device), chunk)) or "held")
    assert arrays.on_device(X, torch.device("cpu")) is None
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (int(1e6 / arrays.DEVICE_SHARE) + 1, 10**12))
    assert arrays.on_device(X, torch.device("cuda"), chunk=64) == "held"
    assert filled == [((1000, 250), "cuda", 64)]
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (int(1e6 / arrays.DEVICE_SHARE) - 1000, 10**12))
    assert arrays.on_device(X, torch.device("cuda")) is None


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["logistic", "linear"])
def test_gpu_rows_read_from_the_store_and_held_on_the_device_fit_as_in_memory(name):
    """A lazy (streamed) split on CUDA is held on the device: the same fit as the in-memory one."""
    store = real_store()
    params = {"device": "cuda", "C": 0.1} if name == "logistic" else {"device": "cuda", "epochs": 4}
    eager = run_probe(store, ProbeConfig(name, (GOOD_KEY,), params))
    lazy = run_probe(store, ProbeConfig(name, (GOOD_KEY,), params, DataConfig(lazy=True)))
    assert abs(lazy.metrics["top1"] - eager.metrics["top1"]) <= 1 / 200 + 1e-12
