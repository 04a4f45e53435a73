"""Dense sweeps: one dense probe per stored key, against the raw-pixel baseline; a tidy table, the
best keys and the classification sweep's plots with mIoU on the y axis."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import Any

from diffprobe.outputs import claim_output
from diffprobe.pipelines.sweep.plots import plot_sweep
from diffprobe.probes.dense.run import dense_probe
from diffprobe.probes.dense.source import PIXELS
from diffprobe.store.layout import FeatureKey
from diffprobe.store.store import FeatureStore

log = logging.getLogger(__name__)

COLUMNS = ("key", "t", "block", "pool", "miou", "pixel_accuracy", "seconds")


def dense_sweep(store: FeatureStore, names: list[str], out_dir: str | Path, *, overwrite: bool = False, **probe: Any) -> dict[str, Any]:
    """A dense probe on each array of ``names`` and on the raw pixels; writes ``results.csv`` (the
    columns :data:`COLUMNS`), ``results.json`` (every run), ``best.json`` and ``acc_vs_t.png`` /
    ``acc_vs_block.png`` / ``acc_vs_pool.png`` into ``out_dir``. ``probe``: :func:`dense_probe`'s options.

    Returns:
        {"rows": tidy rows, "best": the best row, "pixels": the baseline's run, "files": {name: path}}.
    """
    out = claim_output(out_dir, overwrite=overwrite)
    runs, rows = [], []
    for i, name in enumerate(names):
        res = dense_probe(store, [name], **probe)
        k = FeatureKey.parse(name)
        runs.append(res)
        rows.append({"key": name, "t": k.t, "block": k.block, "pool": k.pool_label, "miou": res["metrics"]["miou"],
                     "pixel_accuracy": res["metrics"]["pixel_accuracy"], "seconds": res["seconds"], "top1": res["metrics"]["miou"]})  # fmt: skip
        log.info("[%d/%d] %s: mIoU %.4f", i + 1, len(names), name, rows[-1]["miou"])
    pixels = dense_probe(store, [PIXELS], **probe)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "results.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(COLUMNS), extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    best = max(rows, key=lambda r: r["miou"])
    (out / "results.json").write_text(json.dumps({"runs": runs, "pixels": pixels}, indent=1))
    (out / "best.json").write_text(json.dumps({"overall": {c: best[c] for c in COLUMNS}, "pixels_miou": pixels["metrics"]["miou"]}, indent=1))
    head = probe.get("head", "linear")
    plots = plot_sweep(rows, out, f"dense {head}", baseline=pixels["metrics"]["miou"], metric="mIoU (%)")
    files = {"table": str(out / "results.csv"), "results": str(out / "results.json"), "best": str(out / "best.json"),
             **{n: str(p) for n, p in plots.items()}}  # fmt: skip
    return {"rows": rows, "best": best, "pixels": pixels, "files": files}
