"""``diffprobe demo``: the main job on the bundled real model and Fashion-MNIST slice, on CPU.

Extract → probe every key against a raw-pixel baseline → CKA between every block; one typed
:class:`DemoResult` says what happened.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from diffprobe.extract.config import ExtractConfig
from diffprobe.pipelines.extraction.job import ExtractSummary, extract_features
from diffprobe.probes.errors import ProbeError
from diffprobe.probes.plan import DataConfig
from diffprobe.probes.run import ProbeConfig, run_probe
from diffprobe.store.memory import MemorySplit, MemoryStore
from diffprobe.store.store import FeatureStore, open_store

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


@dataclass(frozen=True)
class KeyScore:
    """One probed key: its name, (t, block, pool) and accuracy (fractions in [0, 1])."""

    key: str
    t: int | None
    block: int | None
    pool: str
    top1: float
    top5: float

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> KeyScore:
        """From a tidy sweep row (see :data:`~diffprobe.probes.report.CSV_COLUMNS`)."""
        return cls(row["key"], row["t"], row["block"], str(row["pool"]), float(row["top1"]), float(row["top5"]))


@dataclass(frozen=True)
class DemoProbes:
    """The demo's probe step: a logistic probe per key, and the raw-pixel baseline on the same items."""

    scores: tuple[KeyScore, ...]
    best: KeyScore
    pixels_top1: float
    pixels_top5: float
    files: dict[str, str]

    @property
    def gain(self) -> float:
        """Best key's top-1 minus the raw pixels' (a fraction)."""
        return self.best.top1 - self.pixels_top1


@dataclass(frozen=True)
class DemoResult:
    """Everything the demo did and wrote."""

    store: Path
    extraction: ExtractSummary
    cka_extraction: ExtractSummary
    probes: DemoProbes
    cka_png: Path
    stored: tuple[str, ...] = field(default=())

    def lines(self) -> list[str]:
        """What ``diffprobe demo`` prints."""
        p, b = self.probes, self.probes.best
        out = [*self.extraction.lines(), f"stored in {self.store}:", *(f"  {s}" for s in self.stored)]
        out.append(f"logistic probes on {len(p.scores)} keys (train → val):")
        out += [f"  {s.key:<14} top-1 {s.top1:.1%}" for s in sorted(p.scores, key=lambda s: -s.top1)[:5]]
        out.append(f"best: {b.key} (t={b.t}, block {b.block}, pool {b.pool}) top-1 {b.top1:.1%} "
                   f"vs raw pixels {p.pixels_top1:.1%} ({p.gain * 100:+.1f} points)")  # fmt: skip
        out.append(f"plots and tables: {Path(p.files['table']).parent}")
        out.append(f"CKA heatmap (every block at t={CKA_T}, {CKA_SPLIT}): {self.cka_png}")
        return out


def demo_config(out_dir: Path, device: str = "auto", batch_size: int = 100) -> ExtractConfig:
    return ExtractConfig(
        data=str(DEMO_DATA), out=str(out_dir / "features.zarr"), model=DEMO_MODEL, checkpoint=str(DEMO_CHECKPOINT),
        timesteps=DEMO_TIMESTEPS, blocks=DEMO_BLOCKS, pools=DEMO_POOLS, batch_size=batch_size, device=device,
    )  # fmt: skip


def run_demo(out_dir: str | Path = "diffprobe-demo", device: str = "auto", progress: bool | None = None) -> DemoResult:
    """The main job: extract the demo keys into ``out_dir/features.zarr`` (plus every block at
    t=90 on val for CKA), fit a logistic probe per key against a raw-pixel baseline with sweep
    plots (``out_dir/probes/``), and write the blocks × blocks CKA heatmap (``out_dir/cka/``).
    Re-running reuses the finished store."""
    from diffprobe.extract.blocks import measure_blocks
    from diffprobe.extract.presets import PRESETS
    from diffprobe.pipelines.cka.analyses import cka_blocks
    from diffprobe.pipelines.cka.outputs import write_outputs

    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    cfg = demo_config(out, device)
    summary = extract_features(cfg, progress=progress)
    n_blocks = len(measure_blocks(PRESETS[DEMO_MODEL].config))
    cka_cfg = replace(cfg, timesteps=(CKA_T,), blocks=tuple(range(1, n_blocks + 1)), pools=(1,), splits=(CKA_SPLIT,))
    cka_summary = extract_features(cka_cfg, progress=progress)
    store = out / "features.zarr"
    probes = demo_probes(store, out)
    cka_png = write_outputs(cka_blocks(store, split=CKA_SPLIT, t=CKA_T, pool=1), out / "cka")["png"]
    with open_store(store) as s:
        stored = tuple(stored_lines(s))
    return DemoResult(store, summary, cka_summary, probes, cka_png, stored)


def stored_lines(store: FeatureStore) -> list[str]:
    """Per split: items, arrays and, per t, the stored blocks and pools."""
    lines = []
    for split in store.splits:
        by_t: dict[int, list[str]] = {}
        dtype = None
        for k in store.feature_keys(split):
            _, dtype, _ = store.array_info(split, k.name)
            by_t.setdefault(k.t, []).append(f"b{k.block}/p{k.pool_label}")
        lines.append(f"{split}: {store.n_items(split)} items, {len(store.keys(split))} arrays ({dtype}, N×C×p×p)")
        lines += [f"  t={t}: {' '.join(v)}" for t, v in by_t.items()]
    return lines


def demo_probes(store_path: str | Path, out_dir: str | Path, data: DataConfig | None = None) -> DemoProbes:
    """The demo's probe step: a logistic probe per key, a raw-pixel logistic baseline, sweep plots.

    Writes ``out_dir/probes/{results.csv, results.json, best.json, acc_vs_*.png, pixels.json}``.
    """
    from diffprobe.pipelines.sweep.run import SweepConfig, run_sweep

    out = Path(out_dir) / "probes"
    data = data or DataConfig()
    with open_store(store_path) as store:
        res = run_sweep(store, SweepConfig(probe="logistic", data=data), out)
        pixels = run_probe(pixel_store(store), ProbeConfig("logistic", ("pixels",), {}, data))
    pixels.save_json(out / "pixels.json")
    scores = tuple(KeyScore.from_row(r) for r in res.rows)
    best = max(scores, key=lambda s: s.top1)
    log.info("best key %s: top-1 %.3f; raw pixels: %.3f", best.key, best.top1, pixels.metrics["top1"])
    files = {**res.files, "pixels": str(out / "pixels.json")}
    return DemoProbes(scores, best, pixels.metrics["top1"], pixels.metrics["top5"], files)


def pixel_store(store: FeatureStore, splits: list[str] | None = None) -> MemoryStore:
    """A :class:`~diffprobe.store.memory.MemoryStore` of the raw pixels (3, S, S) in [-1, 1] of the
    images listed by ``store.paths(split)``, preprocessed as extraction does (S = the model's input size)."""
    from diffprobe.extract.data import DECODE_ERRORS, load_image
    from diffprobe.extract.registry import resolve_config

    cfg = store.config
    _, model = resolve_config(cfg.get("model", "adm"), cfg.get("flags") or {})
    size = model.image_size
    data = {}
    for split in splits or store.splits:
        paths = [str(p) for p in store.paths(split)]
        valid = np.asarray(store.valid(split), dtype=bool).copy()
        pix = np.full((len(paths), 3, size, size), np.nan, dtype=np.float32)
        for i, p in enumerate(paths):
            if not valid[i]:
                continue
            try:
                pix[i] = load_image(_locate(p, store), size)
            except DECODE_ERRORS as e:
                log.warning("pixel baseline: skipping %s (%s)", p, e)
                valid[i] = False
        data[split] = MemorySplit({"pixels": pix}, store.labels(split), store.ids(split), np.asarray(paths), valid)
    return MemoryStore(data, store.class_names, store.config_hash)


def _locate(path: str, store: FeatureStore) -> Path:
    p = Path(path)
    for candidate in (p, Path(store.path).parent / p):
        if candidate.is_file():
            return candidate
    raise ProbeError(f"expected the source image {path!r} to exist (relative paths are read from the working directory)")


__all__ = ["DemoProbes", "DemoResult", "KeyScore", "demo_probes", "pixel_store", "run_demo"]
