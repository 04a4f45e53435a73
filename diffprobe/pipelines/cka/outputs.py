"""Writing a CKA result: DIR/cka.csv (the matrix with its labels), DIR/cka.json and DIR/cka.png."""

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
    return f"{what}{pool}, split {sel['split']} (N={r.matrix.n_items})"


def write_outputs(result: CKAResult, out_dir: str | Path, *, overwrite: bool = False, color_range: str | None = None) -> dict[str, Path]:
    """Write DIR/cka.csv (labels in the first row and column), DIR/cka.json and DIR/cka.png.

    ``color_range``: the heatmap's colour scale, ``"unit"`` or ``"auto"`` (default: per analysis,
    :data:`DEFAULT_COLOR_RANGE`); cka.json records it under ``"heatmap"`` with the scale's limits.

    Raises:
        OutputExistsError: ``out_dir`` is an existing file or non-empty folder and ``overwrite`` is False.
    """
    m = result.matrix
    color_range = color_range or DEFAULT_COLOR_RANGE[result.analysis]
    vmin, vmax, auto = color_limits(m.values, color_range)
    out = claim_output(out_dir, overwrite=overwrite)
    out.mkdir(parents=True, exist_ok=True)
    lines = [",".join([_CORNERS[result.analysis], *m.col_labels])]
    lines += [",".join([lab, *(f"{v:.12g}" for v in row)]) for lab, row in zip(m.row_labels, m.values)]
    paths = {"csv": out / "cka.csv", "json": out / "cka.json", "png": out / "cka.png"}
    paths["csv"].write_text("\n".join(lines) + "\n")
    scale = {"color_range": "auto" if auto else "unit", "vmin": vmin, "vmax": vmax}
    paths["json"].write_text(json.dumps({**result.to_dict(), "heatmap": scale}, indent=1, default=str) + "\n")
    cfg = result.config
    heatmap(m.values, m.row_labels, m.col_labels, paths["png"], title=title(result), row_axis=result.row_axis,
            col_axis=result.col_axis, colorbar_label=f"CKA ({cfg.kernel}, {cfg.estimator})", color_range=color_range)  # fmt: skip
    log.debug("wrote %s, %s and %s", *paths.values())
    return paths
