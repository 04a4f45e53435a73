"""A store finds its images from any folder: the data's location is recorded absolute and relative to
the store, and when neither exists `store repair` says to pass --data."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import diffprobe
from diffprobe.cli import main
from diffprobe.pipelines.extraction.location import ATTR
from tests.helpers import FMNIST_CKPT


def _images(root: Path) -> None:
    rng = np.random.default_rng(0)
    for c in ("coat", "shoe"):
        (root / c).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(rng.integers(0, 256, (32, 32), dtype=np.uint8)).save(root / c / f"{i}.png")


def _damage(store: Path) -> None:
    path = store / "train" / "t0050_b10_p1" / "c" / "1"
    while path.is_dir():
        path = path / "0"
    path.unlink()


def _repair(store: Path, *args: str):
    return CliRunner().invoke(main, ["-q", "store", "repair", str(store), "--no-progress", *args])


@pytest.fixture
def work(tmp_path, monkeypatch) -> Path:
    """An extraction run in ``work/`` from a relative data path (``imgs``) into ``work/s.zarr``, then
    used from ``tmp_path`` (each test its own: repair records a new --data)."""
    work = tmp_path / "work"
    _images(work / "imgs")
    monkeypatch.chdir(work)
    r = CliRunner().invoke(main, ["-q", "extract", "imgs", "-m", "adm-32-fmnist", "--checkpoint", str(FMNIST_CKPT), "--t", "50",
                                  "--blocks", "10", "--pools", "1", "--unit-size", "4", "-o", "s.zarr", "--no-progress"])  # fmt: skip
    assert r.exit_code == 0, r.output
    monkeypatch.chdir(tmp_path)
    return work


def test_the_location_is_recorded_absolute_and_relative_to_the_store(work):
    with diffprobe.open_store(work / "s.zarr") as s:
        assert s.config["data"] == "imgs"
        assert s.attrs[ATTR] == {"absolute": str((work / "imgs").resolve()), "from_store": "imgs"}


def test_repair_from_another_folder_finds_the_images(work, tmp_path):
    _damage(work / "s.zarr")
    r = _repair(work / "s.zarr")
    assert r.exit_code == 0 and "repaired" in r.output, r.output


def test_repair_after_data_and_store_moved_together(work, tmp_path):
    moved = Path(shutil.move(str(work), str(tmp_path / "elsewhere")))
    _damage(moved / "s.zarr")
    r = _repair(moved / "s.zarr")
    assert r.exit_code == 0 and "repaired" in r.output, r.output


def test_repair_without_the_images_says_to_pass_data(work, tmp_path):
    store = Path(shutil.move(str(work / "s.zarr"), str(tmp_path / "alone.zarr")))
    shutil.move(str(work / "imgs"), str(tmp_path / "moved-imgs"))
    _damage(store)
    r = _repair(store)
    assert r.exit_code != 0 and "pass --data" in r.output, r.output
    r = _repair(store, "--data", str(tmp_path / "moved-imgs"))
    assert r.exit_code == 0 and "repaired" in r.output, r.output
