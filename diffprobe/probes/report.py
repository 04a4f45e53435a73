"""Reporting probe runs: the tidy CSV (one row per run) and the printed summary."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from diffprobe.probes.result import CSV_COLUMNS

if TYPE_CHECKING:
    from diffprobe.probes.result import ProbeResult

def write_csv(rows: Iterable[dict[str, Any]], path: str | Path, *, append: bool = False) -> Path:
    """Write tidy rows (columns :data:`CSV_COLUMNS`); ``append`` adds them to an existing table
    (the header is written only when the file is new)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    new = not (append and p.exists())
    with open(p, "a" if append else "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(CSV_COLUMNS), extrasaction="ignore", lineterminator="\n")
        if new:
            w.writeheader()
        w.writerows(rows)
    return p


def summary_lines(res: ProbeResult) -> list[str]:
    """What ``diffprobe probe`` prints: keys and splits, the task's metrics, chosen hyper-parameters, per class."""
    m = res.metrics
    keys = " + ".join(k.name for k in res.keys)
    what = res.config.probe
    if res.task == "dense":
        head, members = res.config.params.get("head", "linear"), int(res.config.params.get("members", 1))
        what = f"dense {head}" + (f" ×{members}" if members > 1 else "")
    lines = [f"{what} probe on {keys}: train {res.train_split} ({res.n_train}) → eval {res.eval_split} ({res.n_eval})"]
    if not res.complete:
        lines.append("INCOMPLETE: only the extracted items were read (--allow-incomplete); see n_train / n_eval")
    if res.task == "dense":
        lines.append(f"mIoU {100 * m['miou']:.2f}%  pixel accuracy {100 * m['pixel_accuracy']:.2f}%  (fit {res.fit_seconds:.2f} s)")
        per_class, what = m["iou"], "IoU per class"
    else:
        lines.append(f"top-1 {100 * m['top1']:.2f}%  top-5 {100 * m['top5']:.2f}%  mean per class {100 * m['mean_per_class']:.2f}%"
                     f"  (fit {res.fit_seconds:.2f} s)")  # fmt: skip
        per_class, what = m["per_class"], "per class"
    if res.selected:
        lines.append("selected: " + ", ".join(f"{k}={v}" for k, v in res.selected.items()))
    if len(res.fold_scores) > 1:
        lines.append(f"folds {res.metric}: " + ", ".join(f"{100 * v:.2f}%" for v in res.fold_scores))
    lines.append(f"{what}: " + ", ".join(f"{k} {100 * v:.1f}%" for k, v in per_class.items() if v is not None))
    return lines
