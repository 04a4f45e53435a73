"""Sweeps: one probe per store key → a tidy table, the best keys and the paper-style plots.

Also the probe step of the demo (:func:`demo_probes`): a logistic probe per key against a raw-pixel
logistic baseline on the same images.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from diffprobe.probes.data import KeyInfo, PoolSpec, default_splits, key_infos
from diffprobe.probes.errors import ProbeError
from diffprobe.probes.plan import DataConfig
from diffprobe.probes.registry import PROBES
from diffprobe.probes.run import CSV_COLUMNS, ProbeConfig, ProbeResult, run_probe, run_probe_per_key

log = logging.getLogger(__name__)

Row = dict[str, Any]

#: Probes whose heads are independent per key: the whole sweep is one fit (one pass over the data).
JOINT: dict[str, Callable[..., list[ProbeResult]]] = {"linear": run_probe_per_key}


@dataclass(frozen=True)
class SweepConfig:
    """A sweep: the probe, its hyper-parameters, which keys, and the data plan.

    Attributes:
        t, blocks, pools: keep extracted keys with these values (empty = all values).
        keys: explicit array names (imported arrays too); when given, the filters are not used.
        joint: for probes in :data:`JOINT`, train every key's head in one pass.
    """

    probe: str = "logistic"
    params: Mapping[str, Any] = field(default_factory=dict)
    t: tuple[int, ...] = ()
    blocks: tuple[int, ...] = ()
    pools: tuple[PoolSpec, ...] = ()
    keys: tuple[str, ...] = ()
    data: DataConfig = field(default_factory=DataConfig)
    joint: bool = True

    def __post_init__(self) -> None:
        if self.probe not in PROBES:
            raise ProbeError(f"unknown probe {self.probe!r}; valid: {', '.join(PROBES)}")
        for name in ("t", "blocks", "pools", "keys"):
            value = getattr(self, name)
            object.__setattr__(self, name, (value,) if isinstance(value, (int, str)) or value is None else tuple(value))


@dataclass
class SweepResult:
    """Per-key results, their tidy rows, the best keys and the files written."""

    rows: list[Row]
    results: list[ProbeResult]
    best: dict[str, Any]
    files: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"best": self.best, "rows": self.rows, "files": self.files}


def select_keys(store: Any, split: str, cfg: SweepConfig) -> list[KeyInfo]:
    """The keys a sweep visits, in (t, block, pool) order; an error names what the store has."""
    infos = key_infos(store, split)
    if cfg.keys:
        missing = [k for k in cfg.keys if k not in infos]
        if missing:
            raise ProbeError(f"unknown key(s) {', '.join(missing)} in split {split!r}; valid: {', '.join(sorted(infos))}")
        return [infos[k] for k in cfg.keys]
    ext = [k for k in infos.values() if k.t is not None]
    chosen = [
        k for k in ext
        if (not cfg.t or k.t in cfg.t) and (not cfg.blocks or k.block in cfg.blocks) and (not cfg.pools or k.pool in cfg.pools)
    ]
    if not chosen:
        have = sorted({(k.t, k.block, k.pool_label) for k in ext})
        raise ProbeError(
            f"expected the filters t={list(cfg.t)}, blocks={list(cfg.blocks)}, pools={list(cfg.pools)} to match a key "
            f"of split {split!r}; the store has (t, block, pool) ∈ {have or 'nothing extracted'}"
        )
    return sorted(chosen, key=lambda k: (k.t, k.block, k.pool if k.pool is not None else 1 << 30))


def best_keys(rows: Sequence[Row], top: int = 5) -> dict[str, Any]:
    """The best row overall, per block and per t (by top-1), and the ``top`` best rows."""
    ranked = sorted((r for r in rows if r.get("top1") is not None), key=lambda r: -r["top1"])
    if not ranked:
        return {"overall": None, "per_block": {}, "per_t": {}, "top": []}
    per_block: dict[str, Row] = {}
    per_t: dict[str, Row] = {}
    for r in ranked:
        per_block.setdefault(str(r["block"]), r)
        per_t.setdefault(str(r["t"]), r)
    brief = ("key", "t", "block", "pool", "top1", "top5")
    short = lambda r: {k: r[k] for k in brief}  # noqa: E731
    return {
        "overall": short(ranked[0]),
        "per_block": {k: short(v) for k, v in per_block.items()},
        "per_t": {k: short(v) for k, v in per_t.items()},
        "top": [short(r) for r in ranked[:top]],
    }


def write_csv(rows: Sequence[Row], path: str | Path) -> Path:
    """The tidy table (columns :data:`~diffprobe.probes.run.CSV_COLUMNS`)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with open(p, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(CSV_COLUMNS), extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    return p


def run_sweep(store: Any, cfg: SweepConfig, out_dir: str | Path | None = None) -> SweepResult:
    """Fit ``cfg.probe`` on every selected key; with ``out_dir`` write results.csv, best.json, results.json, plots."""
    train_split, eval_split = default_splits(list(store.splits), cfg.data.train_split, cfg.data.eval_split)
    keys = select_keys(store, train_split, cfg)
    if eval_split is not None:
        in_eval = set(store.keys(eval_split))
        skipped = [k.name for k in keys if k.name not in in_eval]
        if skipped:
            log.warning("sweep: skipping %s (not in split %r)", ", ".join(skipped), eval_split)
        keys = [k for k in keys if k.name in in_eval]
        if not keys:
            raise ProbeError(f"expected keys present in both {train_split!r} and {eval_split!r}; none of the selected keys is in {eval_split!r}")
    log.info("sweep: %s probe over %d keys", cfg.probe, len(keys))
    joint = JOINT.get(cfg.probe) if cfg.joint and len(keys) > 1 else None
    if joint is not None:
        results = joint(store, ProbeConfig(cfg.probe, tuple(k.name for k in keys), cfg.params, cfg.data))
    else:
        from tqdm.auto import tqdm

        results = []
        for i, k in enumerate(tqdm(keys, desc=f"{cfg.probe} sweep", unit="key", leave=False, disable=None)):
            results.append(run_probe(store, ProbeConfig(cfg.probe, (k.name,), cfg.params, cfg.data)))
            log.info("[%d/%d] %s: top-1 %.4f", i + 1, len(keys), k.name, results[-1].metrics["top1"])
    rows = [r.csv_row() for r in results]
    res = SweepResult(rows, results, best_keys(rows))
    if out_dir is not None:
        res.files = write_sweep(res, cfg, out_dir)
    return res


def write_sweep(res: SweepResult, cfg: SweepConfig, out_dir: str | Path) -> dict[str, str]:
    """results.csv (tidy), results.json (full per-key results), best.json and the PNG plots."""
    from diffprobe.pipelines.plots import plot_sweep

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {"table": str(write_csv(res.rows, out / "results.csv"))}
    config = asdict(cfg)
    config["params"] = dict(cfg.params)
    (out / "results.json").write_text(json.dumps({"config": config, "results": [r.to_dict() for r in res.results]}, indent=1, default=str))
    (out / "best.json").write_text(json.dumps(res.best, indent=1, default=str))
    files.update(results=str(out / "results.json"), best=str(out / "best.json"))
    files.update({name: str(p) for name, p in plot_sweep(res.rows, out, cfg.probe).items()})
    return files


# -- demo ------------------------------------------------------------------------------------------
def pixel_store(store: Any, splits: Sequence[str] | None = None) -> Any:
    """A :class:`~diffprobe.probes.memory.MemoryStore` of the raw pixels (3, S, S) in [-1, 1] of the
    images listed by ``store.paths(split)``, preprocessed as extraction does (S = the model's input size)."""
    from diffprobe.extract.data import DECODE_ERRORS, load_image
    from diffprobe.extract.registry import resolve_config
    from diffprobe.probes.memory import MemorySplit, MemoryStore

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


def _locate(path: str, store: Any) -> Path:
    p = Path(path)
    for candidate in (p, Path(store.path).parent / p):
        if candidate.is_file():
            return candidate
    raise ProbeError(f"expected the source image {path!r} to exist (relative paths are read from the working directory)")


def demo_probes(store_path: str | Path, out_dir: str | Path, data: DataConfig | None = None) -> dict[str, Any]:
    """The demo's probe step: a logistic probe per key, a raw-pixel logistic baseline, sweep plots.

    Writes ``out_dir/probes/{results.csv, results.json, best.json, acc_vs_*.png, pixels.json}``.

    Returns:
        {"best": {key, t, block, pool, top1, top5}, "pixels": {"top1", "top5"}, "gain": best − pixels
        (top-1 points as a fraction), "keys": n, "rows": [...], "files": {...}}.
    """
    from diffprobe.store import open_store

    out = Path(out_dir) / "probes"
    data = data or DataConfig()
    with open_store(store_path) as store:
        cfg = SweepConfig(probe="logistic", data=data)
        res = run_sweep(store, cfg, out)
        pixels = run_probe(pixel_store(store), ProbeConfig("logistic", ("pixels",), {}, data))
    pixels.save_json(out / "pixels.json")
    best = res.best["overall"]
    summary = {
        "best": best,
        "pixels": {"top1": pixels.metrics["top1"], "top5": pixels.metrics["top5"], "C": pixels.selected.get("C")},
        "gain": round(best["top1"] - pixels.metrics["top1"], 6),
        "keys": len(res.rows),
        "rows": [{k: r[k] for k in ("key", "t", "block", "pool", "top1", "top5")} for r in res.rows],
        "files": {**res.files, "pixels": str(out / "pixels.json")},
    }
    log.info("best key %s: top-1 %.3f; raw pixels: %.3f", best["key"], best["top1"], pixels.metrics["top1"])
    return summary
