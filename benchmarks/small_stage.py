"""gpu_probes.py's small stage: the bundled Fashion-MNIST slice extracted on a device, CKA between
blocks, then every probe fitted through ``run_probe`` (vector probes also on the CPU, to compare)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from budget import Budget, Report, gpu_peak, step
from workload import slice_manifest

log = logging.getLogger("gpu_probes")
#: What is extracted, and which keys the probes read.
SMALL_BLOCKS = (10, 12, 15)
VECTOR_KEY, MAP_KEY = "t0090_b12_p1", "t0090_b12_full"
#: The README's small-data recipe for the transformer heads, and its top-1 on the full slice (CPU;
#: logistic from the demo) — comparable only with the full slice and 8 epochs.
HEAD_RECIPE = {"dim": 64, "heads": 4, "depth": 2, "lr": 0.01, "epochs": 8, "batch_size": 4}
README_TOP1 = {"logistic": 87.8, "attention": 86.0, "difformer": 81.6}
VECTOR_PROBES = ("logistic", "linear", "knn")


@dataclass(frozen=True)
class SmallConfig:
    """budget: seconds of wall time; per_class: (train, val) images per class, None: the whole slice;
    timesteps: extracted (90 is the one probed); head_epochs: None: the recipe's 8."""

    budget: float = 40.0
    per_class: tuple[int, int] | None = None
    timesteps: tuple[int, ...] = (90, 150)
    head_epochs: int | None = None

    def __post_init__(self) -> None:
        if 90 not in self.timesteps:
            raise ValueError(f"expected the small stage's timesteps to include 90 (the probes read t = 90), got {self.timesteps}")

    @property
    def full(self) -> bool:
        """Whether the README's top-1 figures are comparable (the whole slice, the recipe as written)."""
        return self.per_class is None and self.head_epochs is None and self.timesteps == (90, 150)


def small_stage(cfg: SmallConfig, dev: Any, report: Report, budget: Budget, folder: Path) -> None:
    """Extract into ``folder``, CKA at t = 90 pool 1 on val, then each probe on --device (and the CPU)."""
    import diffprobe
    from diffprobe.pipelines.cka import CKAConfig, cka_blocks
    from diffprobe.pipelines.demo import DEMO_CHECKPOINT, DEMO_MODEL

    store = folder / "small.zarr"
    extract = diffprobe.ExtractConfig(
        data=str(slice_manifest(folder, cfg.per_class)), out=str(store), model=DEMO_MODEL, checkpoint=str(DEMO_CHECKPOINT),
        timesteps=cfg.timesteps, blocks=SMALL_BLOCKS, pools=(1, None), batch_size=100, device=str(dev), loader_workers=0,
    )  # fmt: skip
    log.info("small: extracting %s into %s on %s", extract.data, store, dev)
    summary = step(report, budget, "small: extract", lambda: diffprobe.extract_features(extract, progress=False))
    if summary is None:
        return
    report.add("small: extract", summary.seconds, "s", f"{summary.items} images × t {cfg.timesteps} → blocks {SMALL_BLOCKS}, "
               f"pools 1 and full; {summary.items_per_second:.0f} img/s; {len(summary.failures)} failed")  # fmt: skip
    log.info("CKA between blocks at t=90, pool 1, on %s", dev)
    r = step(report, budget, "small: cka blocks", lambda: cka_blocks(store, split="val", t=90, pool=1, config=CKAConfig(device=str(dev))))
    if r is not None:
        off = r.values[~np.eye(len(r.values), dtype=bool)]
        report.add("small: cka blocks", r.matrix.facts.get("seconds"), "s",
                   f"{r.summary()}; diagonal {np.diag(r.values).min():.4f}, off-diagonal {off.min():.3f}–{off.max():.3f}")  # fmt: skip
    probe_rows(cfg, dev, report, budget, store)


def probe_rows(cfg: SmallConfig, dev: Any, report: Report, budget: Budget, store: Path) -> None:
    """Fit time and top-1 of each probe with its defaults (heads: the README's recipe)."""
    import torch

    from diffprobe.probes.result import ProbeConfig
    from diffprobe.probes.run import run_probe
    from diffprobe.store.layout import FeatureKey

    head = {**HEAD_RECIPE, **({"epochs": cfg.head_epochs} if cfg.head_epochs else {})}
    maps = tuple(FeatureKey(t, b, None).name for t in cfg.timesteps for b in SMALL_BLOCKS)
    plans = [*((name, (VECTOR_KEY,), {}) for name in VECTOR_PROBES), ("attention", (MAP_KEY,), head), ("difformer", maps, head)]
    devices = [str(dev)] if dev.type == "cpu" else [str(dev), "cpu"]  # a broken device path shows as a different top-1
    for name, keys, params in plans:
        for d in devices if name in VECTOR_PROBES else devices[:1]:
            what = f"small: {name}" + (" (cpu)" if d != str(dev) else "")
            log.info("%s on %s, device %s", name, "+".join(keys), d)
            config = ProbeConfig(name, keys, {**params, "device": d})
            with gpu_peak(torch.device(d)) as peak:
                res = step(report, budget, f"{what} fit", lambda config=config: run_probe(store, config))
            if res is None:
                continue
            ref = f"; README: {README_TOP1[name]:.1f}% (CPU, fp32 features)" if cfg.full and name in README_TOP1 else ""
            chosen = f"; chose {res.selected}" if res.selected else ""
            report.add(f"{what} fit", res.fit_seconds, "s", f"on {d}, {'+'.join(keys)}, {res.n_train} train{chosen}{''.join(peak)}")
            report.add(f"{what} top-1", 100 * res.metrics["top1"], "%", f"{res.n_eval} val images, chance 10%{ref}")
