"""Fixtures shared by every test package (paths and helpers: tests/helpers.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from tests.helpers import DATA, FMNIST_CKPT, MINI_CKPT, extract_config, make_manifest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", help="also run the tests marked slow (the full run; see README)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    slow = pytest.mark.skip(reason="slow: the full run includes it (pytest --run-slow)")
    gpu = pytest.mark.skip(reason="needs a CUDA device")
    run_slow, cuda = config.getoption("--run-slow"), torch.cuda.is_available()
    for item in items:
        if "slow" in item.keywords and not run_slow:
            item.add_marker(slow)
        if "gpu" in item.keywords and not cuda:
            item.add_marker(gpu)


@pytest.fixture(autouse=True)
def _deterministic(monkeypatch) -> None:
    torch.manual_seed(0)
    from diffprobe.threads import CORES_VAR, COUNTS, PASSIVE

    for name in (*COUNTS, *PASSIVE, CORES_VAR):  # the CLI's thread policy sets these: no test leaves them behind
        if name in os.environ:
            monkeypatch.setenv(name, os.environ[name])
        else:
            monkeypatch.delenv(name, raising=False)
    import diffprobe.progress

    # a command run in this process (--no-progress) sets the bar policy for the process: no test leaves it behind
    monkeypatch.setattr(diffprobe.progress, "_SHOW", None)


@pytest.fixture(scope="session")
def mini_flags() -> dict:
    return json.loads((DATA / "adm64_mini_random_golden.json").read_text())["guided_diffusion_flags"]


@pytest.fixture(scope="session")
def fmnist_backbone():
    import diffprobe

    return diffprobe.load_backbone("adm-32-fmnist", FMNIST_CKPT)


@pytest.fixture(scope="session")
def mini_backbone(mini_flags):
    import diffprobe

    return diffprobe.load_backbone("adm", MINI_CKPT, **mini_flags)


@pytest.fixture(scope="session")
def small_manifest(tmp_path_factory) -> Path:
    return make_manifest(tmp_path_factory.mktemp("data") / "small.csv")


@pytest.fixture(scope="session")
def small_store(tmp_path_factory, small_manifest) -> Path:
    """A real store: 100 train + 50 val Fashion-MNIST images, t 50/150, blocks 10/13, pools 1/2."""
    import diffprobe

    out = tmp_path_factory.mktemp("store") / "small.zarr"
    diffprobe.extract_features(extract_config(small_manifest, out, unit_size=32), progress=False)
    return out


@pytest.fixture
def figures(monkeypatch):
    """{file name: Figure} of every figure saved while the test runs."""
    from matplotlib.figure import Figure

    saved: dict = {}
    original = Figure.savefig

    def savefig(self, fname, *args, **kwargs):
        saved[getattr(fname, "name", str(fname)).rsplit("/", 1)[-1]] = self
        return original(self, fname, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", savefig)
    return saved
