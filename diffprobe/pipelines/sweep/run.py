"""Sweeps: one probe per store key → a tidy table, the best keys (ties reported) and the paper-style
plots, with an optional raw-pixel baseline run the same way. Any probe: the feature probes of
:data:`~diffprobe.probes.registry.PROBES` and the dense probe, all through one result type."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from diffprobe.outputs import claim_output
from diffprobe.probes.data import default_splits
from diffprobe.probes.errors import ProbeError
from diffprobe.probes.plan import DataConfig
from diffprobe.probes.registry import DENSE_PROBES, PROBES
from diffprobe.probes.report import write_csv
from diffprobe.probes.result import ProbeConfig, ProbeResult, key_dict
from diffprobe.registry import Registry, unknown_name_message
from diffprobe.store.reader import StoreReader
from diffprobe.store.select import ALL, KeyInfo, KeySelection, resolve_selection

log = logging.getLogger(__name__)

Row = dict[str, Any]

#: Probes whose heads are independent per key: the whole sweep is one fit (one pass over the data).
JOINT: Registry[Any] = Registry("joint sweep")
JOINT.register_lazy("linear", "diffprobe.probes.run:run_probe_per_key")


@dataclass(frozen=True)
class SweepConfig:
    """A sweep: the probe, its hyper-parameters, which keys, and the data plan.

    Attributes:
        selection: the keys; an axis left out (``()``) means every stored value here (see
            :meth:`~diffprobe.store.select.KeySelection.fill`), names alone select just those arrays.
        joint: for probes in :data:`JOINT`, train every key's head in one pass.
        pixels: also run the probe on the raw pixels of the same items: the baseline of the table and plots.
    """

    probe: str = "logistic"
    params: Mapping[str, Any] = field(default_factory=dict)
    selection: KeySelection = field(default_factory=KeySelection)
    data: DataConfig = field(default_factory=DataConfig)
    joint: bool = True
    pixels: bool = False

    def __post_init__(self) -> None:
        if self.probe not in PROBES and self.probe not in DENSE_PROBES:
            raise ProbeError(unknown_name_message("probe", self.probe, [*PROBES.names(), *DENSE_PROBES.names()]))

    @property
    def keys(self) -> KeySelection:
        """The selection a sweep resolves: axes left out mean every stored value."""
        return self.selection.fill(ALL) if self.selection.by_axes() else self.selection

    def to_dict(self) -> dict[str, Any]:
        return {"probe": self.probe, "params": dict(self.params), "selection": self.selection.to_dict(),
                "data": self.data.__dict__, "joint": self.joint, "pixels": self.pixels}  # fmt: skip


@dataclass
class SweepResult:
    """Per-key results, the best keys, the baseline (if run) and the files written."""

    results: list[ProbeResult]
    best: dict[str, Any]
    baseline: ProbeResult | None = None
    files: dict[str, str] = field(default_factory=dict)

    @property
    def rows(self) -> list[Row]:
        return [r.csv_row() for r in self.results]

    def scores(self) -> list[tuple[Any, float]]:
        """(FeatureKey, score) of every single extracted key: what the plots draw."""
        return [(r.keys[0].key, r.score) for r in self.results if len(r.keys) == 1 and r.keys[0].key is not None]

    def to_dict(self) -> dict[str, Any]:
        return {"best": self.best, "rows": self.rows, "baseline": self.baseline.to_dict() if self.baseline else None, "files": self.files}

    def lines(self) -> list[str]:
        """What ``diffprobe sweep`` prints: a row per key, the baseline, the best key (and ties) and the files written."""
        metric = self.results[0].metric if self.results else "top1"
        second = "top5" if metric == "top1" else "pixel_accuracy"
        out = [f"{'key':<18} {'t':>5} {'block':>5} {'pool':>5} {metric:>7} {second:>14}"]
        for r in self.rows:
            out.append(f"{r['key']:<18} {r['t']!s:>5} {r['block']!s:>5} {r['pool']!s:>5} {100 * r['score']:>6.2f}% {100 * r[second]:>13.2f}%")
        if self.baseline is not None:
            out.append(f"{'raw pixels':<36} {100 * self.baseline.score:>6.2f}%")
        b = self.best["overall"]
        ties = [t["key"] for t in self.best.get("ties", [])]
        out.append(f"best: {b['key']} ({metric} {100 * b['score']:.2f}%)" + (f"; tied with {', '.join(ties)}" if ties else ""))
        if self.files:
            out.append(f"wrote {', '.join(self.files.values())}")
        return out


def select_keys(store: StoreReader, split: str, cfg: SweepConfig) -> list[KeyInfo]:
    """The keys a sweep visits, in (t, block, pool) order; an error names what the store has."""
    return resolve_selection(store, split, cfg.keys)


def best_keys(results: Sequence[ProbeResult], top: int = 5) -> dict[str, Any]:
    """The best key overall (``ties``: the others with the same score), per block and per t, and the ``top`` best."""
    ranked = sorted(results, key=lambda r: -r.score)
    if not ranked:
        return {"overall": None, "ties": [], "per_block": {}, "per_t": {}, "top": []}

    def short(r: ProbeResult) -> dict[str, Any]:
        k = key_dict(r.keys[0]) if len(r.keys) == 1 else {"key": "+".join(k.name for k in r.keys), "t": None, "block": None, "pool": None}
        return {**k, "metric": r.metric, "score": r.score}

    per_block: dict[str, ProbeResult] = {}
    per_t: dict[str, ProbeResult] = {}
    for r in ranked:
        if len(r.keys) == 1 and r.keys[0].key is not None:
            per_block.setdefault(str(r.keys[0].key.block), r)
            per_t.setdefault(str(r.keys[0].key.t), r)
    ties = [short(r) for r in ranked[1:] if r.score == ranked[0].score]
    if ties:
        log.warning("sweep: %d keys tie for best (%s %.4f): %s", len(ties) + 1, ranked[0].metric, ranked[0].score,
                    ", ".join(t["key"] for t in [short(ranked[0]), *ties]))  # fmt: skip
    return {"overall": short(ranked[0]), "ties": ties, "per_block": {k: short(v) for k, v in per_block.items()},
            "per_t": {k: short(v) for k, v in per_t.items()}, "top": [short(r) for r in ranked[:top]]}  # fmt: skip


def run_key(store: StoreReader, cfg: SweepConfig, names: tuple[str, ...]) -> ProbeResult:
    """One probe of the sweep on the arrays ``names`` (``("pixels",)``: the raw-pixel baseline)."""
    config = ProbeConfig(cfg.probe, names, cfg.params, cfg.data)
    if cfg.probe in DENSE_PROBES:
        from diffprobe.probes.dense.run import dense_probe

        return dense_probe(store, config)  # type: ignore[arg-type]
    from diffprobe.probes.run import run_probe

    if names == ("pixels",):
        from diffprobe.probes.pixels import pixel_store

        return run_probe(pixel_store(store), config)  # type: ignore[arg-type]
    return run_probe(store, config)


def run_sweep(store: StoreReader, cfg: SweepConfig, out_dir: str | Path | None = None, *, overwrite: bool = False) -> SweepResult:
    """Fit ``cfg.probe`` on every selected key (and, with ``cfg.pixels``, on the raw pixels); with
    ``out_dir`` write results.csv, results.json, best.json and the plots (see :func:`write_sweep`).

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
    if cfg.joint and len(keys) > 1 and cfg.probe in JOINT:
        results = JOINT.get(cfg.probe)(store, ProbeConfig(cfg.probe, tuple(k.name for k in keys), cfg.params, cfg.data))
    else:
        from tqdm.auto import tqdm

        from diffprobe.progress import bar_disabled

        results = []
        for i, k in enumerate(tqdm(keys, desc=f"{cfg.probe} sweep", unit="key", leave=False, disable=bar_disabled())):
            results.append(run_key(store, cfg, (k.name,)))
            log.info("[%d/%d] %s: %s %.4f", i + 1, len(keys), k.name, results[-1].metric, results[-1].score)
    baseline = run_key(store, cfg, ("pixels",)) if cfg.pixels else None
    res = SweepResult(results, best_keys(results), baseline)
    if out_dir is not None:
        res.files = write_sweep(res, cfg, out_dir, overwrite=overwrite)
    return res


def write_sweep(res: SweepResult, cfg: SweepConfig, out_dir: str | Path, *, overwrite: bool = False,
                baseline: ProbeResult | None = None) -> dict[str, str]:  # fmt: skip
    """results.csv (tidy, LF line endings), results.json (every run), best.json and the PNG plots, with
    the baseline (``res.baseline``, or ``baseline``) as a reference line and a row of its own.

    Raises:
        OutputExistsError: ``out_dir`` is an existing file or non-empty folder and ``overwrite`` is False.
    """
    from diffprobe.pipelines.sweep.plots import plot_sweep

    out = claim_output(out_dir, overwrite=overwrite)
    out.mkdir(parents=True, exist_ok=True)
    base = baseline or res.baseline
    rows = res.rows + ([base.csv_row()] if base else [])
    files = {"table": str(write_csv(rows, out / "results.csv"))}
    doc = {"config": cfg.to_dict(), "results": [r.to_dict() for r in res.results], "baseline": base.to_dict() if base else None}
    (out / "results.json").write_text(json.dumps(doc, indent=1, default=str) + "\n")
    best = {**res.best, "baseline": {"key": "pixels", "score": base.score} if base else None}
    (out / "best.json").write_text(json.dumps(best, indent=1, default=str) + "\n")
    files.update(results=str(out / "results.json"), best=str(out / "best.json"))
    metric = "mIoU (%)" if res.results and res.results[0].task == "dense" else "top-1 accuracy (%)"
    name = f"dense {cfg.params.get('head', 'linear')}" if cfg.probe in DENSE_PROBES else cfg.probe
    plots = plot_sweep(res.scores(), out, name, baseline=base.score if base else None, metric=metric)
    files.update({n: str(p) for n, p in plots.items()})
    return files
