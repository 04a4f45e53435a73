"""Tiny random SDXL, SD3, Flux, SANA and PixArt pipeline folders, built once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def pipelines_2024(tmp_path_factory) -> dict[str, Path]:
    pytest.importorskip("diffusers", reason="the optional extra is not installed: pip install 'diffprobe[diffusers]'")
    pytest.importorskip("transformers", reason="the optional extra is not installed: pip install 'diffprobe[diffusers]'")
    pytest.importorskip("tokenizers", reason="the tiny T5 and Gemma tokenizers are built with tokenizers")
    from tests.extract.diffusers import tiny2024

    root = tmp_path_factory.mktemp("pipelines2024")
    return {k: build(root / k) for k, build in tiny2024.BUILDERS.items()}
