"""The diffusers family is optional: without the extra, ADM works and diffusers models say how to install it."""

from __future__ import annotations

import subprocess
import sys

from click.testing import CliRunner

from diffprobe.cli import main


def test_nothing_imports_diffusers_until_a_diffusers_model_is_described():
    code = ("import sys, diffprobe, diffprobe.extract.registry, diffprobe.cli\n"
            "diffprobe.model_spec('adm-32-fmnist')\n"
            "assert 'diffusers' not in sys.modules and 'transformers' not in sys.modules, sorted(sys.modules)")  # fmt: skip
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]


def test_without_the_extra_a_diffusers_model_is_a_clear_error(monkeypatch):
    from diffprobe.extract.diffusers import describe, family

    monkeypatch.setitem(sys.modules, "diffusers", None)  # `import diffusers` now raises ImportError
    describe.canonical.cache_clear()
    family.measure_blocks.cache_clear()
    r = CliRunner().invoke(main, ["blocks", "ddpm-cifar10-32"])
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert "diffusers models need the optional dependency diffusers" in r.output and "pip install 'diffprobe[diffusers]'" in r.output
    r = CliRunner().invoke(main, ["blocks", "adm-32-fmnist"])
    assert r.exit_code == 0, r.output
