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
#: The CKA figure: every block at one t, globally pooled, on the val split.
CKA_T = 90
CKA_SPLIT = "val"


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
    """The main job: extract the demo keys into ``out_dir/features.zarr`` (plus every block at
    t=90 on val for CKA), fit a logistic probe per key against a raw-pixel baseline with sweep
    plots (``out_dir/probes/``), and write the blocks × blocks CKA heatmap (``out_dir/cka/``).
    Re-running reuses the finished store."""
    from dataclasses import replace

    from diffprobe.extract.blocks import measure_blocks
    from diffprobe.extract.presets import PRESETS
    from diffprobe.pipelines.cka import demo_cka
    from diffprobe.pipelines.sweep import demo_probes
    from diffprobe.store.store import open_store

    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    cfg = demo_config(out, device)
    summary = extract(cfg, progress=progress)
    n_blocks = len(measure_blocks(PRESETS[DEMO_MODEL].config))
    cka_cfg = replace(cfg, timesteps=(CKA_T,), blocks=tuple(range(1, n_blocks + 1)), pools=(1,), splits=(CKA_SPLIT,))
    cka_summary = extract(cka_cfg, progress=progress)
    extras: dict[str, Any] = {"cka_extraction": cka_summary}
    extras["probes"] = demo_probes(out / "features.zarr", out)
    extras["cka_png"] = demo_cka(out / "features.zarr", out / "cka", CKA_SPLIT, CKA_T, 1)
    stored = []
    with open_store(out / "features.zarr") as s:
        for split in s.splits:
            by_t: dict[int, list[str]] = {}
            for k in s.feature_keys(split):
                shape, dtype, _ = s.array_info(split, k.name)
                by_t.setdefault(k.t, []).append(f"b{k.block}/p{k.pool}")
            stored.append(f"{split}: {s.n_items(split)} items, {len(s.keys(split))} arrays ({dtype}, N×C×p×p)")
            stored += [f"  t={t}: {' '.join(v)}" for t, v in by_t.items()]
    return DemoResult(out / "features.zarr", summary, stored, extras)
