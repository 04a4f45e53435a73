"""A tiny real store for the fault catalogue (docs/reliability.md): 20 train + 20 val Fashion-MNIST
images, t 50, block 3, pools 1, 2 and the native map, units of 8 items (3 per split: 8, 8, 4)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from diffprobe.cli import main
from tests.helpers import extract_config, make_manifest

TINY = dict(unit_size=8, forward_batch=8, timesteps=(50,), blocks=(3,), pools=(1, 2, None))
#: the same run on the command line (``cli("extract", *tiny_args(manifest, out))``)
TINY_ARGS = ("--model", "adm-32-fmnist", "--t", "50", "--blocks", "3", "--pool", "1,2,full", "--unit-size", "8", "--forward-batch", "8",
             "--batch-size", "16", "--loader-workers", "0", "--no-progress")  # fmt: skip
KEY = "t0050_b03_p2"


def tiny_config(manifest: Path, out: Path, **kw):
    return extract_config(manifest, out, **{**TINY, **kw})


def tiny_args(manifest: Path, out: Path, *extra: str) -> list[str]:
    return ["extract", str(manifest), *TINY_ARGS, "--out", str(out), *extra]


def cli(*args: object) -> tuple[int, str]:
    """(exit code, output) of ``diffprobe ARGS``; a traceback is never part of a fault's answer."""
    r = CliRunner().invoke(main, [str(a) for a in args])
    assert "Traceback" not in r.output, r.output
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        raise r.exception
    return r.exit_code, r.output


def beside(out: Path) -> list[str]:
    """What lies beside a store (lock files, temporaries …), itself excluded."""
    return sorted(p.name for p in out.parent.iterdir() if p.name != out.name and p.name.startswith(f".{out.name}"))


@pytest.fixture(scope="session")
def tiny_manifest(tmp_path_factory) -> Path:
    return make_manifest(tmp_path_factory.mktemp("tinydata") / "tiny.csv", 2, 2)


@pytest.fixture(scope="session")
def tiny_store(tmp_path_factory, tiny_manifest) -> Path:
    """The undisturbed run every fault's re-run must reproduce, byte for byte."""
    import diffprobe

    out = tmp_path_factory.mktemp("tiny") / "tiny.zarr"
    diffprobe.extract_features(tiny_config(tiny_manifest, out), progress=False)
    return out


@pytest.fixture
def tiny(tiny_store, tmp_path) -> Path:
    """A copy of the tiny store, to damage."""
    return Path(shutil.copytree(tiny_store, tmp_path / "s.zarr"))
