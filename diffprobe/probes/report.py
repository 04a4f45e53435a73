"""Reporting probe runs: the tidy CSV (one row per run) and the printed summary."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from diffprobe.probes.run import ProbeResult

#: Columns of the tidy CSV row, in order.
CSV_COLUMNS = (
    "probe", "train_split", "eval_split", "key", "t", "block", "pool", "params", "selected",
    "top1", "top5", "mean_per_class", "n_train", "n_eval", "fit_seconds", "config_hash",
)  # fmt: skip


def write_csv(rows: Iterable[dict[str, Any]], path: str | Path, *, append: bool = False) -> Path:
    """Write tidy rows (columns :data:`CSV_COLUMNS`); ``append`` adds them to an existing table
    (the header is written only when the file is new)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    new = not (append and p.exists())
    with open(p, "a" if append else "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(CSV_COLUMNS), extrasaction="ignore")
        if new:
            w.writeheader()
        w.writerows(rows)
    return p


def summary_lines(res: ProbeResult) -> list[str]:
    """What ``diffprobe probe`` prints: keys and splits, accuracies, chosen hyper-parameters, per class."""
    m = res.metrics
    keys = "+".join(k.name for k in res.keys)
    lines = [
        f"{res.config.probe} probe on {keys}: train {res.train_split} ({res.n_train}) → eval {res.eval_split} ({res.n_eval})",
        f"top-1 {100 * m['top1']:.2f}%  top-5 {100 * m['top5']:.2f}%  mean per class {100 * m['mean_per_class']:.2f}%"
        f"  (fit {res.fit_seconds:.2f} s)",
    ]
    if res.selected:
        lines.append("selected: " + ", ".join(f"{k}={v}" for k, v in res.selected.items()))
    if len(res.fold_top1) > 1:
        lines.append("folds top-1: " + ", ".join(f"{100 * v:.2f}%" for v in res.fold_top1))
    lines.append("per class: " + ", ".join(f"{k} {100 * v:.1f}%" for k, v in m["per_class"].items() if v is not None))
    return lines
