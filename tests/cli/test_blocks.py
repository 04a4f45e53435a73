"""`diffprobe blocks` and `--version` through click's CliRunner."""

from __future__ import annotations

import json

from click.testing import CliRunner

from diffprobe import __version__
from diffprobe.cli import main
from tests.helpers import FMNIST_CKPT


def test_version():
    r = CliRunner().invoke(main, ["--version"])
    assert r.exit_code == 0 and __version__ in r.output


def test_blocks_256_table_on_meta():
    r = CliRunner().invoke(main, ["blocks", "adm-256-uncond"])
    assert r.exit_code == 0, r.output
    lines = [ln.split() for ln in r.output.splitlines() if ln.strip()[:1].isdigit()]
    assert len(lines) == 37
    assert lines[18][:5] == ["19", "middle_block", "middle", "1024", "8×8"]
    assert lines[23][:5] == ["24", "output_blocks.4", "output", "1024", "16×16"]


def test_blocks_json_with_checkpoint():
    r = CliRunner().invoke(main, ["blocks", "adm-32-fmnist", "--checkpoint", str(FMNIST_CKPT), "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.output[r.output.index("{") :])
    assert len(data["blocks"]) == 19
    assert data["blocks"][9] == {"number": 10, "path": "middle_block", "channels": 128, "height": 8, "width": 8, "stage": "middle"}
    assert data["flags"]["channel_mult"] == "1,2,2"


def test_blocks_with_flags_and_errors():
    r = CliRunner().invoke(main, ["blocks", "adm", "--flags", "image_size=32,num_channels=32,channel_mult=1,2,attention_resolutions=16"])
    assert r.exit_code == 0, r.output
    assert "blocks (32×32 input; t in 0..999)" in r.output
    r = CliRunner().invoke(main, ["blocks", "adm-999"])
    assert r.exit_code != 0 and "unknown model 'adm-999'" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(main, ["blocks", "adm-32-fmnist", "--checkpoint", "/nonexistent.pt"])
    assert r.exit_code != 0 and "checkpoint not found" in r.output
