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


FMNIST = ASSETS / "fmnist"


def make_manifest(path: Path, per_class_train: int = 10, per_class_val: int = 5) -> Path:
    """A CSV manifest over a stratified subset of the bundled Fashion-MNIST slice."""
    rows = ["path,label,split"]
    for split, per in (("train", per_class_train), ("val", per_class_val)):
        for cls in sorted(p for p in (FMNIST / split).iterdir() if p.is_dir()):
            for f in sorted(cls.glob("*.png"))[:per]:
                rows.append(f"{f},{cls.name},{split}")
    path.write_text("\n".join(rows) + "\n")
    return path


def extract_config(data, out, **kw):
    import diffprobe

    base = dict(
        data=str(data), out=str(out), model="adm-32-fmnist", checkpoint=str(FMNIST_CKPT),
        timesteps=(50, 150), blocks=(10, 13), pools=(1, 2), batch_size=16, loader_workers=0,
    )  # fmt: skip
    base.update(kw)
    return diffprobe.ExtractConfig(**base)


@pytest.fixture(scope="session")
def small_manifest(tmp_path_factory) -> Path:
    return make_manifest(tmp_path_factory.mktemp("data") / "small.csv")


@pytest.fixture(scope="session")
def small_store(tmp_path_factory, small_manifest) -> Path:
    """A real store: 100 train + 50 val Fashion-MNIST images, t 50/150, blocks 10/13, pools 1/2."""
    import diffprobe

    out = tmp_path_factory.mktemp("store") / "small.zarr"
    diffprobe.extract(extract_config(small_manifest, out, unit_size=32), progress=False)
    return out


def read_all(path) -> dict:
    import diffprobe

    with diffprobe.open_store(path) as s:
        return {(sp, k): s.read(sp, k) for sp in s.splits for k in s.keys(sp)}
