"""Writing a CKA (or other similarity) result: DIR/<metric>.csv (the matrix with its labels),
DIR/<metric>.json and DIR/<metric>.png — ``cka.csv`` … for CKA, ``mutual-knn.csv`` … for the others."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from diffprobe.outputs import claim_output
from diffprobe.pipelines.cka.analyses import CKAResult
from diffprobe.pipelines.cka.plot import color_limits, heatmap
from diffprobe.store.layout import pool_label

log = logging.getLogger(__name__)

#: The label of the CSV's corner cell per analysis.
_CORNERS = {"blocks": "block", "timesteps": "t", "stores": "A \\ B"}
#: The heatmap's colour scale per analysis when none is given: a block of U-Net features changes
#: little between nearby timesteps (CKA ≈ 0.97–1.00), which a 0–1 scale would show as one flat
#: colour; blocks and stores span most of the unit scale, which keeps figures comparable.
DEFAULT_COLOR_RANGE = {"blocks": "unit", "timesteps": "auto", "stores": "unit"}


def title(r: CKAResult) -> str:
    """The heatmap's title: what was compared, at which pool, on which split, over how many items."""
    sel = r.selection
    what = {"blocks": f"blocks × blocks, t={sel.get('t')}", "timesteps": f"timesteps × timesteps, block {sel.get('block')}",
            "stores": " × ".join(str(s.get("model") or name) for s, name in zip(r.stores, ("store A", "store B")))}[r.analysis]  # fmt: skip
    pool = f", pool {pool_label(sel['pool'])}" if "pool" in sel else ""
    metric = "" if r.metric == "cka" else f"{r.metric}: "
    return f"{metric}{what}{pool}, split {sel['split']} (N={r.matrix.n_items})"


def write_outputs(result: CKAResult, out_dir: str | Path, *, overwrite: bool = False, color_range: str | None = None,
                  claimed: bool = False) -> dict[str, Path]:  # fmt: skip
    """Write DIR/<metric>.csv (labels in the first row and column), DIR/<metric>.json and DIR/<metric>.png.

    ``color_range``: the heatmap's colour scale, ``"unit"`` or ``"auto"`` (default: per analysis for
    CKA, :data:`DEFAULT_COLOR_RANGE`; auto for the other metrics, whose ranges differ); the JSON records it
    under ``"heatmap"`` with the scale's limits. ``claimed``: the caller has checked ``out_dir`` already
    (several metrics written into one folder).

    Raises:
        OutputExistsError: ``out_dir`` is an existing file or non-empty folder and ``overwrite`` is False.
    """
    m = result.matrix
    color_range = color_range or (DEFAULT_COLOR_RANGE[result.analysis] if result.metric == "cka" else "auto")
    vmin, vmax, auto = color_limits(m.values, color_range)
    out = Path(out_dir) if claimed else claim_output(out_dir, overwrite=overwrite)
    out.mkdir(parents=True, exist_ok=True)
    lines = [",".join([_CORNERS[result.analysis], *m.col_labels])]
    lines += [",".join([lab, *(f"{v:.12g}" for v in row)]) for lab, row in zip(m.row_labels, m.values)]
    stem = result.metric
    paths = {"csv": out / f"{stem}.csv", "json": out / f"{stem}.json", "png": out / f"{stem}.png"}
    paths["csv"].write_text("\n".join(lines) + "\n")
    scale = {"color_range": "auto" if auto else "unit", "vmin": vmin, "vmax": vmax}
    paths["json"].write_text(json.dumps({**result.to_dict(), "heatmap": scale}, indent=1, default=str) + "\n")
    heatmap(m.values, m.row_labels, m.col_labels, paths["png"], title=title(result), row_axis=result.row_axis,
            col_axis=result.col_axis, colorbar_label=result.metric_text(), color_range=color_range)  # fmt: skip
    log.debug("wrote %s, %s and %s", *paths.values())
    return paths
