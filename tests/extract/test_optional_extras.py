"""The diffusers and timm families are optional: without their extras, ADM works and their models say how to install them."""

from __future__ import annotations

import subprocess
import sys

from click.testing import CliRunner

from diffprobe.cli import main


def test_nothing_imports_an_extra_until_one_of_its_models_is_described():
    code = ("import sys, diffprobe, diffprobe.extract.registry, diffprobe.cli\n"
            "diffprobe.model_spec('adm-32-fmnist')\n"
            "assert not {'diffusers', 'transformers', 'timm', 'torchvision'} & set(sys.modules), sorted(sys.modules)")  # fmt: skip
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


def test_without_the_extra_a_timm_model_is_a_clear_error(monkeypatch):
    from diffprobe.extract.timm import describe

    monkeypatch.setitem(sys.modules, "timm", None)
    describe.measure_blocks.cache_clear()
    r = CliRunner().invoke(main, ["blocks", "mae-vit-b16"])
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert "timm models need the optional dependency timm" in r.output and "pip install 'diffprobe[timm]'" in r.output
    r = CliRunner().invoke(main, ["models"])
    assert r.exit_code == 0 and "mae-vit-b16" in r.output and "hf download timm/vit_base_patch16_224.mae" in r.output, r.output
