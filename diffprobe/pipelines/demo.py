"""``diffprobe demo``: the main job on the bundled real model and Fashion-MNIST slice, on CPU.

Extract a grid shaped like the paper's ablations → probe every key against a raw-pixel baseline →
CKA between every block; one typed :class:`DemoResult` says what happened.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from diffprobe.errors import OutputExistsError
from diffprobe.extract.config import ExtractConfig
from diffprobe.extract.presets import ASSETS
from diffprobe.extract.registry import PRESETS
from diffprobe.outputs import claim_output
from diffprobe.pipelines.extraction.job import ExtractSummary, extract_features
from diffprobe.probes.plan import DataConfig
from diffprobe.probes.result import ProbeResult, key_dict
from diffprobe.store.layout import FeatureKey
from diffprobe.store.select import KeySelection
from diffprobe.store.store import FeatureStore, open_store

log = logging.getLogger(__name__)

DEMO_MODEL = "adm-32-fmnist"
DEMO_CHECKPOINT = ASSETS / str(PRESETS[DEMO_MODEL].bundled)  # the checkpoint the preset ships
DEMO_DATA = ASSETS / "fmnist"
#: ``demo --quick``: 10 train and 5 val images per class of the same slice (a manifest beside it)
QUICK_DATA = ASSETS / "fmnist-small.csv"
#: The demo's grid is a cross through (t, block), like the paper's two ablation tables, rather than
#: their product, which would cost a U-Net forward through the deepest block for every t: every
#: block at BLOCKS_T (the CKA figure's t too), and DEMO_TIMESTEPS at T_BLOCK, two blocks after the
#: middle block (10), where a forward is still cheap. Both arms are stored at DEMO_POOLS; the block
#: and t sweeps are probed at SWEEP_POOL, and every pool at (BLOCKS_T, T_BLOCK). On 2 CPU cores a
#: forward through block 12 costs about a third of a full one, and each t of the t arm about 13 s.
BLOCKS_T = 90
T_BLOCK = 12
DEMO_TIMESTEPS = (10, 90, 300, 500)
DEMO_POOLS = (1, 2)
SWEEP_POOL = 1
#: The CKA figure: every block at one t, globally pooled, on the val split.
CKA_T = BLOCKS_T
CKA_SPLIT = "val"


@dataclass(frozen=True)
class KeyScore:
    """One probed key: its name, (t, block, pool) and accuracy (fractions in [0, 1])."""

    key: str
    t: int | None
    block: int | None
    pool: int | str
    top1: float
    top5: float

    @classmethod
    def of(cls, res: ProbeResult) -> KeyScore:
        """From one key's result."""
        k = key_dict(res.keys[0])
        return cls(k["key"], k["t"], k["block"], k["pool"], float(res.metrics["top1"]), float(res.metrics["top5"]))


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
    """Everything the demo did and wrote. ``extractions``: (what was extracted, its summary) per
    arm of the grid; both write the same store."""

    store: Path
    extractions: tuple[tuple[str, ExtractSummary], ...]
    probes: DemoProbes
    cka_png: Path
    stored: tuple[str, ...] = field(default=())

    def lines(self) -> list[str]:
        """What ``diffprobe demo`` prints."""
        p, b = self.probes, self.probes.best
        out = [f"extracted into {self.store}:"]
        for what, e in self.extractions:
            out.append(f"  {what}: {e.items} items ({e.forwards} U-Net forwards) in {e.seconds:.1f} s, failed: {len(e.failures)}")
            out += [f"    failed: [{s}] {i}: {err}" for s, i, err in e.failures[:20]]
        out += [f"stored in {self.store}:", *(f"  {s}" for s in self.stored)]
        out.append(f"logistic probes on {len(p.scores)} keys (train → val):")
        out += [f"  {s.key:<14} top-1 {s.top1:.1%}" for s in sorted(p.scores, key=lambda s: -s.top1)[:5]]
        out.append(f"best: {b.key} (t={b.t}, block {b.block}, pool {b.pool}) top-1 {b.top1:.1%} "
                   f"vs raw pixels {p.pixels_top1:.1%} ({p.gain * 100:+.1f} points)")  # fmt: skip
        out.append(f"plots and tables: {Path(p.files['table']).parent}")
        out.append(f"CKA heatmap (every block at t={CKA_T}, {CKA_SPLIT}): {self.cka_png}")
        return out


def demo_configs(out_dir: Path, n_blocks: int, device: str = "auto", batch_size: int = 100, quick: bool = False) -> dict[str, ExtractConfig]:
    """The two arms of the demo's grid, {what: config}, both into ``out_dir/features.zarr`` (``quick``: of the small slice)."""
    base = ExtractConfig(
        data=str(QUICK_DATA if quick else DEMO_DATA), out=str(out_dir / "features.zarr"), model=DEMO_MODEL, checkpoint=str(DEMO_CHECKPOINT),
        timesteps=(BLOCKS_T,), blocks=tuple(range(1, n_blocks + 1)), pools=DEMO_POOLS, batch_size=batch_size, device=device,
    )  # fmt: skip
    ts = tuple(t for t in DEMO_TIMESTEPS if t != BLOCKS_T)
    return {
        f"blocks 1-{n_blocks} at t={BLOCKS_T}": base,
        f"block {T_BLOCK} at t={','.join(map(str, ts))}": replace(base, timesteps=ts, blocks=(T_BLOCK,)),
    }


def demo_keys(n_blocks: int) -> tuple[str, ...]:
    """The keys the demo probes: every block at (BLOCKS_T, SWEEP_POOL), every t at (T_BLOCK,
    SWEEP_POOL), every pool at (BLOCKS_T, T_BLOCK)."""
    keys = [FeatureKey(BLOCKS_T, b, SWEEP_POOL) for b in range(1, n_blocks + 1)]
    keys += [FeatureKey(t, T_BLOCK, SWEEP_POOL) for t in DEMO_TIMESTEPS]
    keys += [FeatureKey(BLOCKS_T, T_BLOCK, p) for p in DEMO_POOLS]
    return tuple(k.name for k in sorted(set(keys)))


def run_demo(out_dir: str | Path = "diffprobe-demo", device: str = "auto", progress: bool | None = None, quick: bool = False) -> DemoResult:
    """The main job: extract the demo's grid into ``out_dir/features.zarr`` (every block at t=90;
    t = 10, 90, 300, 500 at block 12), fit a logistic probe per key against a raw-pixel baseline
    with sweep plots (``out_dir/probes/``), and write the blocks × blocks CKA heatmap at t=90
    (``out_dir/cka/``). ``quick``: the same job on 150 of the slice's images (10 train and 5 val per
    class): seconds instead of minutes, for a first look or a smoke test; its accuracies are noisy.

    ``out_dir`` belongs to the demo: one holding only its outputs is reused — the finished store
    (only missing arrays are extracted), ``probes/`` and ``cka/`` regenerated in place — and one
    holding anything else is refused (:func:`check_demo_folder`), nothing touched.
    """
    from diffprobe.extract.registry import model_spec
    from diffprobe.pipelines.cka.analyses import cka_blocks
    from diffprobe.pipelines.cka.outputs import write_outputs

    out = Path(out_dir).expanduser()
    check_demo_folder(out)
    out.mkdir(parents=True, exist_ok=True)
    n_blocks = len(model_spec(DEMO_MODEL).blocks)
    configs = demo_configs(out, n_blocks, device, quick=quick)
    extractions = tuple((what, extract_features(cfg, progress=progress)) for what, cfg in configs.items())
    store = out / "features.zarr"
    # The demo's own outputs are regenerated on every run (overwrite=True), by design.
    probes = demo_probes(store, out, keys=demo_keys(n_blocks), overwrite=True)
    cka_png = write_outputs(cka_blocks(store, split=CKA_SPLIT, t=CKA_T, pool=1), out / "cka", overwrite=True)["png"]
    with open_store(store) as s:
        stored = tuple(stored_lines(s))
    return DemoResult(store, extractions, probes, cka_png, stored)


#: What the demo writes into its folder; a folder holding anything else is not the demo's.
DEMO_ENTRIES = frozenset({"features.zarr", "probes", "cka"})


def check_demo_folder(out: Path) -> None:
    """Refuse a folder the demo did not make: one that holds anything besides its own outputs.

    Raises:
        OutputExistsError: names what is there (nothing is touched).
    """
    if not out.exists():
        return
    other = sorted(p.name for p in out.iterdir()) if out.is_dir() else [out.name]
    # its own entries, and the locks and temporaries a stopped demo run leaves beside its store (``.features.zarr.…``)
    other = [n for n in other if n not in DEMO_ENTRIES and not n.startswith(".features.zarr")] if out.is_dir() else other
    if other:
        from diffprobe.store.ownership import describe

        raise OutputExistsError(f"{out} is {describe(out)}, not a demo folder (it would hold only {', '.join(sorted(DEMO_ENTRIES))}); "
                                "nothing was written. Pass another folder, or a new name")  # fmt: skip


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


def demo_probes(store_path: str | Path, out_dir: str | Path, data: DataConfig | None = None,
                keys: Sequence[str] = (), *, overwrite: bool = False) -> DemoProbes:  # fmt: skip
    """The demo's probe step: a logistic probe per key (``keys``, default every extracted key), a
    raw-pixel logistic baseline on the same items, and sweep plots with the baseline drawn in.

    Writes ``out_dir/probes/{results.csv, results.json, best.json, acc_vs_*.png, pixels.json}``; an
    existing non-empty ``out_dir/probes`` is refused (checked first) unless ``overwrite``.
    """
    from diffprobe.pipelines.sweep.run import SweepConfig, run_sweep, write_sweep

    out = claim_output(Path(out_dir) / "probes", overwrite=overwrite, option="out_dir")
    data = data or DataConfig()
    cfg = SweepConfig(probe="logistic", selection=KeySelection(names=tuple(keys)) if keys else KeySelection(), data=data, pixels=True)
    with open_store(store_path) as store:
        res = run_sweep(store, cfg)
    pixels = res.baseline
    assert pixels is not None
    files = write_sweep(res, cfg, out, overwrite=overwrite)
    pixels.save_json(out / "pixels.json", overwrite=overwrite)
    scores = tuple(KeyScore.of(r) for r in res.results)
    best = max(scores, key=lambda s: s.top1)
    log.info("best key %s: top-1 %.3f; raw pixels: %.3f", best.key, best.top1, pixels.metrics["top1"])
    files = {**files, "pixels": str(out / "pixels.json")}
    return DemoProbes(scores, best, pixels.metrics["top1"], pixels.metrics["top5"], files)
