"""Shared fixtures. Test data in tests/data/ comes from ../shared/golden (see tests/data/README.md)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

DATA = Path(__file__).parent / "data"
ASSETS = Path(__file__).parent.parent / "diffprobe" / "assets"
FMNIST_CKPT = ASSETS / "adm32_fmnist_ema.pt"
MINI_CKPT = DATA / "adm64_mini_random.pt"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _deterministic() -> None:
    torch.manual_seed(0)


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


def golden(name: str) -> dict[str, np.ndarray]:
    with np.load(DATA / f"{name}_golden.npz") as z:
        return {k: z[k] for k in z.files}
