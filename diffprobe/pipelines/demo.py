"""``diffprobe demo``: the main job on the bundled real model and Fashion-MNIST slice, on CPU."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from diffprobe.extract.config import ExtractConfig
from diffprobe.pipelines.extract_job import ExtractSummary, extract

log = logging.getLogger(__name__)

ASSETS = Path(__file__).resolve().parent.parent / "assets"
DEMO_CHECKPOINT = ASSETS / "adm32_fmnist_ema.pt"
DEMO_DATA = ASSETS / "fmnist"
DEMO_MODEL = "adm-32-fmnist"
#: Keys of the demo: early/middle t; an encoder block, the middle block, and a decoder block.
DEMO_TIMESTEPS = (50, 150)
DEMO_BLOCKS = (7, 10, 13)
DEMO_POOLS = (1, 2)


@dataclass
class DemoResult:
    store: Path
    extraction: ExtractSummary
    stored: list[str] = field(default_factory=list)
    extras: dict[str, Any] = field(default_factory=dict)


def demo_config(out_dir: Path, device: str = "auto", batch_size: int = 100) -> ExtractConfig:
    return ExtractConfig(
        data=str(DEMO_DATA),
        out=str(out_dir / "features.zarr"),
        model=DEMO_MODEL,
        checkpoint=str(DEMO_CHECKPOINT),
        timesteps=DEMO_TIMESTEPS,
        blocks=DEMO_BLOCKS,
        pools=DEMO_POOLS,
        batch_size=batch_size,
        device=device,
    )


def run_demo(out_dir: str | Path = "diffprobe-demo", device: str = "auto", progress: bool | None = None) -> DemoResult:
    """Extract the demo keys into ``out_dir/features.zarr`` and describe what was stored."""
    from diffprobe.store.store import open_store

    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    summary = extract(demo_config(out, device), progress=progress)
    stored = []
    with open_store(out / "features.zarr") as s:
        for split in s.splits:
            for name in s.keys(split):
                shape, dtype, _ = s.array_info(split, name)
                stored.append(f"{split}/{name}: {'×'.join(map(str, shape))} {dtype}")
    return DemoResult(out / "features.zarr", summary, stored)
