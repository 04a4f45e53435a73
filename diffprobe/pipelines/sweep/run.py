"""Sweeps: one probe per store key → a tidy table, the best keys and the paper-style plots."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from diffprobe.outputs import claim_output
from diffprobe.probes.data import KeyInfo, default_splits, key_infos
from diffprobe.probes.errors import ProbeError
from diffprobe.probes.plan import DataConfig
from diffprobe.probes.registry import PROBES
from diffprobe.probes.report import write_csv
from diffprobe.probes.run import ProbeConfig, ProbeResult, run_probe, run_probe_per_key
from diffprobe.store.layout import parse_pool
from diffprobe.store.reader import StoreReader
from diffprobe.store.select import BlockSpec, axes_summary, resolve_block_specs

log = logging.getLogger(__name__)

Row = dict[str, Any]

#: Probes whose heads are independent per key: the whole sweep is one fit (one pass over the data).
JOINT: dict[str, Callable[..., list[ProbeResult]]] = {"linear": run_probe_per_key}


@dataclass(frozen=True)
class SweepConfig:
    """A sweep: the probe, its hyper-parameters, which keys, and the data plan.

    Attributes:
        t, blocks, pools: keep extracted keys with these values (empty = all values); blocks are
            paper numbers or module paths, pools sizes or None (the native map).
        keys: explicit array names (imported arrays too); when given, the filters are not used.
        joint: for probes in :data:`JOINT`, train every key's head in one pass.
    """

    probe: str = "logistic"
    params: Mapping[str, Any] = field(default_factory=dict)
    t: tuple[int, ...] = ()
    blocks: tuple[BlockSpec, ...] = ()
    pools: tuple[int | None, ...] = ()
    keys: tuple[str, ...] = ()
    data: DataConfig = field(default_factory=DataConfig)
    joint: bool = True

    def __post_init__(self) -> None:
        if self.probe not in PROBES:
            raise PROBES.unknown(self.probe)
        for name in ("t", "blocks", "pools", "keys"):
            value = getattr(self, name)
            object.__setattr__(self, name, (value,) if isinstance(value, (int, str)) or value is None else tuple(value))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["params"] = dict(self.params)
        return d


@dataclass
class SweepResult:
    """Per-key results, their tidy rows, the best keys and the files written."""

    rows: list[Row]
    results: list[ProbeResult]
    best: dict[str, Any]
    files: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"best": self.best, "rows": self.rows, "files": self.files}

    def lines(self) -> list[str]:
        """What ``diffprobe sweep`` prints: a row per key, the best key and the files written."""
        out = [f"{'key':<18} {'t':>5} {'block':>5} {'pool':>5} {'top-1':>7} {'top-5':>7}"]
        for r in self.rows:
            out.append(f"{r['key']:<18} {r['t']!s:>5} {r['block']!s:>5} {r['pool']!s:>5} {100 * r['top1']:>6.2f}% {100 * r['top5']:>6.2f}%")
        b = self.best["overall"]
        out.append(f"best: {b['key']} (top-1 {100 * b['top1']:.2f}%)")
        if self.files:
            out.append(f"wrote {', '.join(self.files.values())}")
        return out


def select_keys(store: StoreReader, split: str, cfg: SweepConfig) -> list[KeyInfo]:
    """The keys a sweep visits, in (t, block, pool) order; an error names what the store has."""
    infos = key_infos(store, split)
    if cfg.keys:
        missing = [k for k in cfg.keys if k not in infos]
        if missing:
            raise ProbeError(f"unknown key(s) {', '.join(missing)} in split {split!r}; valid: {', '.join(sorted(infos))}")
        return [infos[k] for k in cfg.keys]
    extracted = sorted(k.key for k in infos.values() if k.key is not None)
    blocks = resolve_block_specs(store, split, cfg.blocks)
    pools = [parse_pool(p) for p in cfg.pools]
    chosen = [
        k for k in extracted
        if (not cfg.t or k.t in cfg.t) and (not blocks or k.block in blocks) and (not pools or k.pool in pools)
    ]  # fmt: skip
    if not chosen:
        raise ProbeError(
            f"expected the filters t={list(cfg.t)}, blocks={list(cfg.blocks)}, pools={list(cfg.pools)} to match a key "
            f"of split {split!r}; the store has {axes_summary(extracted)}"
        )
    return [infos[k.name] for k in chosen]


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


def run_sweep(store: StoreReader, cfg: SweepConfig, out_dir: str | Path | None = None, *, overwrite: bool = False,
              baseline: float | None = None) -> SweepResult:  # fmt: skip
    """Fit ``cfg.probe`` on every selected key; with ``out_dir`` write results.csv, best.json,
    results.json and the plots (see :func:`write_sweep`).

    ``out_dir`` is checked before anything is computed: an existing file or non-empty folder is
    refused (:class:`~diffprobe.errors.OutputExistsError`) unless ``overwrite``.
    """
    if out_dir is not None:
        claim_output(out_dir, overwrite=overwrite)
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
        res.files = write_sweep(res, cfg, out_dir, overwrite=overwrite, baseline=baseline)
    return res


def write_sweep(res: SweepResult, cfg: SweepConfig, out_dir: str | Path, *, overwrite: bool = False,
                baseline: float | None = None) -> dict[str, str]:  # fmt: skip
    """results.csv (tidy), results.json (full per-key results), best.json and the PNG plots, with
    ``baseline`` (a top-1 fraction, e.g. the raw pixels') drawn as a reference line.

    Raises:
        OutputExistsError: ``out_dir`` is an existing file or non-empty folder and ``overwrite`` is False.
    """
    from diffprobe.pipelines.sweep.plots import plot_sweep

    out = claim_output(out_dir, overwrite=overwrite)
    out.mkdir(parents=True, exist_ok=True)
    files = {"table": str(write_csv(res.rows, out / "results.csv"))}
    (out / "results.json").write_text(json.dumps({"config": cfg.to_dict(), "results": [r.to_dict() for r in res.results]}, indent=1, default=str))
    (out / "best.json").write_text(json.dumps(res.best, indent=1, default=str))
    files.update(results=str(out / "results.json"), best=str(out / "best.json"))
    files.update({name: str(p) for name, p in plot_sweep(res.rows, out, cfg.probe, baseline=baseline).items()})
    return files
