"""Silently wrong results: weights full of NaN, and a run where every image fails, are not successes.

A checkpoint full of NaN extracted with exit 0 and no warning; a run where every item failed to
decode exited 0 and `store verify` said ok.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch

import diffprobe
from diffprobe.store.integrity import deep_verify
from tests.helpers import FMNIST, FMNIST_CKPT, make_manifest, read_all
from tests.reliability.conftest import beside, cli, tiny_args


@pytest.fixture(scope="module")
def nan_checkpoint(tmp_path_factory):
    sd = torch.load(FMNIST_CKPT, weights_only=True, map_location="cpu")
    sd = {k: torch.full_like(v, float("nan")) if v.is_floating_point() and k.startswith("input_blocks.1.") else v for k, v in sd.items()}
    path = tmp_path_factory.mktemp("ckpt") / "diverged.pt"
    torch.save(sd, path)
    return path


def same_val_split(store, reference) -> None:
    """The val split of ``store`` (extracted alone) holds the bytes of the undisturbed run's."""
    got, ref = read_all(store), read_all(reference)
    assert {k for k in ref if k[0] == "val"} == set(got) and all(got[k].tobytes() == ref[k].tobytes() for k in got)
    with diffprobe.open_store(store) as s:
        assert s.is_complete() and deep_verify(s).ok


def test_nan_weights_are_refused_and_the_rerun_is_the_undisturbed_run(nan_checkpoint, tiny_store, tiny_manifest, tmp_path):
    out = tmp_path / "s.zarr"
    code, text = cli(*tiny_args(tiny_manifest, out, "--checkpoint", nan_checkpoint, "--splits", "val"))
    assert code == 1, text
    assert f"{nan_checkpoint} holds NaN or Inf in" in text and "weight tensors (input_blocks.1.0." in text, text
    assert "pass --allow-nonfinite to extract anyway" in text, text
    code, text = cli(*tiny_args(tiny_manifest, out, "--splits", "val"))  # the right checkpoint: the store (never run) is rebuilt
    assert code == 0, text
    same_val_split(out, tiny_store)
    assert beside(out) == []


def test_nan_weights_are_extracted_when_allowed(nan_checkpoint, tiny_manifest, tmp_path):
    out = tmp_path / "nan.zarr"
    code, text = cli(*tiny_args(tiny_manifest, out, "--checkpoint", nan_checkpoint, "--allow-nonfinite", "--splits", "val"))
    assert code == 0, text
    assert "weight tensors (input_blocks.1.0." in text and "extracting anyway (--allow-nonfinite)" in text, text
    code, text = cli("store", "verify", "--deep", out)
    assert code == 1 and "bad values: val/t0050_b03_p1: 20 rows with NaN" in text, text
    with diffprobe.open_store(out) as s:  # allow_nonfinite is no part of the store's identity
        assert s.config["allow_nonfinite"] is True and "allow_nonfinite" not in s.attrs["identity"]


def broken_data(tmp_path):
    """A manifest whose images (the tiny store's, same ids) are all unreadable; and how to fix them."""
    root = tmp_path / "data"
    listed = [f for split in ("train", "val") for cls in sorted((FMNIST / split).iterdir()) for f in sorted(cls.glob("*.png"))[:2]]
    for f in listed:  # the images make_manifest lists, under the same relative paths (so the same ids)
        target = root / "fmnist" / f.relative_to(FMNIST)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(b"not an image")
    manifest = make_manifest(root / "tiny.csv", 2, 2)

    def fix() -> None:
        for f in listed:
            shutil.copy(f, root / "fmnist" / f.relative_to(FMNIST))

    return manifest, fix


def test_a_run_where_every_item_fails_is_an_error_and_resumes_once_fixed(tiny_store, tmp_path):
    manifest, fix = broken_data(tmp_path)
    out = tmp_path / "s.zarr"
    code, text = cli(*tiny_args(manifest, out, "--splits", "val"))
    assert code == 1, text
    assert "every one of the 20 items of this run failed to decode, so nothing was extracted: [val] fmnist/val/" in text, text
    assert "UnidentifiedImageError" in text and "re-run the same command" in text, text
    code, text = cli("store", "verify", out)
    assert code == 1 and "store is NOT complete" in text, text
    fix()
    code, text = cli(*tiny_args(manifest, out, "--splits", "val"))
    assert code == 0 and "units: 3 run" in text, text
    same_val_split(out, tiny_store)


def test_verify_reports_a_split_whose_every_item_failed(tiny):
    for marker in (tiny / "_progress" / "val").glob("unit-*.json"):  # as an older run recorded it: done, every item failed
        doc = json.loads(marker.read_text())
        doc["failed"] = [[f"item{i}", "UnidentifiedImageError: cannot identify image file"] for i in range(doc["start"], doc["stop"])]
        marker.write_text(json.dumps(doc))
    code, text = cli("store", "verify", tiny)
    assert code == 1 and "every one of the 20 items of split 'val' failed to decode: it holds no features" in text, text
    with diffprobe.open_store(tiny) as s:
        assert s.valid("val").all()  # the values are untouched: only the verdict changed
