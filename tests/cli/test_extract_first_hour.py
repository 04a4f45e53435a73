"""The first hour with `diffprobe extract` (issue 12, items 1–4 and 7): weights never random by
accident, nothing written before the run is known to work, clean errors, one summary, -v anywhere."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

import diffprobe
from diffprobe.cli import main
from tests.helpers import FMNIST, FMNIST_CKPT


@pytest.fixture
def tiny(tmp_path) -> Path:
    """Four Fashion-MNIST images of two classes: ``tiny/<class>/<file>``."""
    root = tmp_path / "tiny"
    for cls in ("0_tshirt_top", "1_trouser"):
        (root / cls).mkdir(parents=True)
        for f in sorted((FMNIST / "val" / cls).glob("*.png"))[:2]:
            shutil.copy(f, root / cls / f.name)
    return root


def run(*args) -> tuple[int, str]:
    r = CliRunner().invoke(main, [str(a) for a in args])
    return r.exit_code, r.output


def extract(data, out, *extra, blocks: str = "10") -> tuple[int, str]:
    return run("extract", data, "--t", "50", "--blocks", blocks, "--pool", "1", "--out", out, "--no-progress", *extra)


def test_bundled_checkpoint_is_used_and_random_weights_need_asking(tiny, tmp_path):
    code, text = extract(tiny, tmp_path / "r.zarr", "--model", "adm-32-fmnist")  # no --checkpoint
    assert code == 0, text
    with diffprobe.open_store(tmp_path / "r.zarr") as s:
        assert s.attrs["checkpoint_sha256"] == diffprobe.load_backbone("adm-32-fmnist", FMNIST_CKPT).checkpoint_sha256
    code, text = run("store", "info", tmp_path / "r.zarr")
    assert "weights: checkpoint sha256" in text and "RANDOM" not in text

    flags = "image_size=32,num_channels=32,channel_mult=1,2,attention_resolutions=16,num_res_blocks=1"
    code, text = extract(tiny, tmp_path / "adm.zarr", "--model", "adm", "--flags", flags, blocks="5")
    assert code == 1 and "adm needs its weights" in text and "--random-weights" in text
    assert not (tmp_path / "adm.zarr").exists()
    code, text = extract(tiny, tmp_path / "u.zarr", "--model", "adm-256-uncond")
    assert code == 1 and "download 256x256_diffusion_uncond.pt from https://" in text and "Traceback" not in text

    code, text = extract(tiny, tmp_path / "adm.zarr", "--model", "adm", "--flags", flags, "--random-weights", blocks="5")
    assert code == 0, text
    assert "has random weights" in text  # logged as a warning
    code, text = run("store", "info", tmp_path / "adm.zarr")
    assert "weights: RANDOM" in text
    code, text = extract(tiny, tmp_path / "x.zarr", "--model", "adm-32-fmnist", "--random-weights", "--checkpoint", FMNIST_CKPT)
    assert code == 1 and "expected --checkpoint or --random-weights, not both" in text


@pytest.mark.parametrize("case", ["wrong model", "json checkpoint", "no class label", "missing checkpoint"])
def test_a_failed_run_writes_nothing_and_the_fix_just_works(tiny, tmp_path, case):
    out = tmp_path / "m5.zarr"
    (tmp_path / "flags.json").write_text('{"image_size": 32}')
    bad = {
        "wrong model": ("--model", "adm-256-uncond", "--checkpoint", FMNIST_CKPT),
        "json checkpoint": ("--model", "adm-32-fmnist", "--checkpoint", tmp_path / "flags.json"),
        "no class label": ("--model", "adm-32-fmnist", "--flags", "class_cond=True,num_classes=10", "--random-weights"),
        "missing checkpoint": ("--model", "adm-32-fmnist", "--checkpoint", tmp_path / "nonexistent.pt"),
    }[case]
    message = {
        "wrong model": "does not fit this model",
        "json checkpoint": "is not a PyTorch checkpoint: it looks like a JSON file",
        "no class label": "is class-conditional: pass --class-label K",
        "missing checkpoint": "checkpoint not found:",
    }[case]
    code, text = extract(tiny, out, *bad)
    assert code == 1 and message in text and "Traceback" not in text, text
    assert not out.exists()  # nothing was written
    code, text = extract(tiny, out, "--dry-run", *bad)
    assert code == 1 and message in text  # --dry-run catches it too
    code, text = extract(tiny, out, "--model", "adm-32-fmnist", "--checkpoint", FMNIST_CKPT)
    assert code == 0 and "items: 4" in text, text


def test_strict_failure_leaves_a_store_that_a_new_configuration_may_replace(tiny, tmp_path):
    (tiny / "1_trouser" / "broken.png").write_bytes(b"not a png")
    out = tmp_path / "s.zarr"
    code, text = extract(tiny, out, "--model", "adm-32-fmnist", "--strict")
    assert code == 1 and "cannot decode" in text and "--strict" in text
    (tiny / "1_trouser" / "broken.png").unlink()  # the fix changes the data, so the configuration
    code, text = extract(tiny, out, "--model", "adm-32-fmnist")
    assert code == 0, text
    assert "no unit of it ever finished" in text and "items: 4" in text
    code, text = extract(tiny, out, "--model", "adm-32-fmnist", "--seed", "3")  # now a unit finished: refused
    assert code == 1 and "was made with another configuration" in text and "seed: store has 0, this run 3" in text


def test_class_conditional_message_names_the_option(tiny, tmp_path):
    code, text = extract(tiny, tmp_path / "c.zarr", "--model", "adm-64-cond", "--random-weights", "--dry-run")
    assert code == 1 and "adm-64-cond is class-conditional: pass --class-label K" in text
    assert "class_label=K" in text and "in 0..999" in text and not (tmp_path / "c.zarr").exists()
    Image.new("RGB", (8, 8)).save(tiny / "0_tshirt_top" / "tiny.png")
    code, text = extract(tiny, tmp_path / "c.zarr", "--model", "adm-32-fmnist", "--class-label", "3")
    assert code == 1 and "--class-label 3 given, but adm-32-fmnist is not class-conditional" in text


def test_the_summary_is_printed_once_and_v_works_anywhere(tiny, tmp_path):
    code, text = extract(tiny, tmp_path / "v.zarr", "--model", "adm-32-fmnist", "-v")
    assert code == 0, text
    assert text.count("units: 1 run, 0 already done") == 1
    assert "extracting 1 units" in text  # -v after the subcommand still turns on INFO logs
    code, text = run("store", "info", tmp_path / "v.zarr", "-q")
    assert code == 0 and "complete" in text
