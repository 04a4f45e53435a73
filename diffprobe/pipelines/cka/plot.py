"""CKA heatmaps, drawn with matplotlib's Agg canvas (no pyplot, no global backend switch).

Fonts scale with the size of a cell, so a 2×2 and a 19×19 matrix are both readable at the figure's
size. The colour scale is either the unit scale (``"unit"``: 0 to 1, comparable across figures) or
auto-ranged to the values (``"auto"``: the data's minimum to maximum, so CKA values that all sit near
0.99 still show their structure); an auto range is written in the colour bar's label.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from diffprobe.errors import ConfigError

if TYPE_CHECKING:
    import numpy as np

#: Colour scales of :func:`heatmap` (numpy and matplotlib are imported inside the functions, so the
#: CLI can import this name without them).
COLOR_RANGES = ("auto", "unit")


def color_limits(values: np.ndarray, color_range: str) -> tuple[float, float, bool]:
    """(vmin, vmax, auto) of the colour scale of ``values``.

    ``"unit"``: 0 to 1 (below 0 when a value is negative, as unbiased estimators can give).
    ``"auto"``: the finite values' minimum to maximum; a matrix whose values are all equal has no
    range to show and falls back to the unit scale (``auto`` is then False).
    """
    if color_range not in COLOR_RANGES:
        raise ConfigError(f"expected a colour range in {', '.join(COLOR_RANGES)}, got {color_range!r}")
    import numpy as np

    finite = values[np.isfinite(values)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if color_range == "auto" and hi - lo > 1e-9:
        return lo, hi, True
    return min(0.0, lo), max(1.0, hi), False


def _digits(span: float) -> int:
    """Decimals that tell apart values spread over ``span``: 2 for a wide range, up to 4 for a narrow one."""
    return 2 if span >= 0.1 else 3 if span >= 0.01 else 4


def heatmap(
    values: np.ndarray,
    row_labels: Sequence[str],
    col_labels: Sequence[str],
    path: str | Path,
    *,
    title: str = "",
    row_axis: str = "",
    col_axis: str = "",
    colorbar_label: str = "CKA",
    color_range: str = "unit",
    annotate_max_cells: int = 400,
) -> Path:
    """Write ``values`` (L, M) as a heatmap PNG with labelled axes and a colour bar; returns the path.

    Rows run top to bottom in the given order. Cells carry their value when there are at most
    ``annotate_max_cells`` of them, with as many decimals as the colour range needs. ``color_range``
    is ``"unit"`` or ``"auto"`` (see :func:`color_limits`); an auto range is appended to
    ``colorbar_label`` ("…, auto range 0.97–1.00").
    """
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows, cols = values.shape
    if (rows, cols) != (len(row_labels), len(col_labels)):
        raise ValueError(f"expected {rows} row and {cols} column labels, got {len(row_labels)} and {len(col_labels)}")
    vmin, vmax, auto = color_limits(values, color_range)
    digits = _digits(vmax - vmin) if auto else 2
    cell = 0.42 if max(rows, cols) <= 24 else 0.22
    width, height = min(max(5.0, 2.5 + cell * cols), 30), min(max(3.5, 1.8 + cell * rows), 30)
    # The side of a cell in points, as laid out: fonts are sized from it.
    cell_pt = 72 * min((width - 2.5) / cols, (height - 1.8) / rows)
    tick_size = float(np.clip(0.36 * cell_pt, 6, 12))
    fig = Figure(figsize=(width, height), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(values, cmap="magma", vmin=vmin, vmax=vmax, interpolation="nearest", aspect="auto")
    rotate = 0.6 * tick_size * max(len(str(c)) for c in col_labels) > 0.95 * cell_pt
    ax.set_xticks(range(cols), [str(c) for c in col_labels], rotation=90 if rotate else 0, fontsize=tick_size)
    ax.set_yticks(range(rows), [str(r) for r in row_labels], fontsize=tick_size)
    ax.set_xlabel(col_axis, fontsize=11)
    ax.set_ylabel(row_axis, fontsize=11)
    if title:
        # As large as fits the figure's width (about 0.55 em per character), between 9 and 15 pt.
        ax.set_title(title, fontsize=float(np.clip(0.9 * 72 * width / (0.55 * len(title)), 9, 15)))
    if rows * cols <= annotate_max_cells:
        cell_size = float(np.clip(0.9 * cell_pt / (0.6 * (digits + 2)), 6, 14))  # "1.00": digits + 2 characters
        for i in range(rows):
            for j in range(cols):
                v = float(values[i, j])
                bright = (v - vmin) / (vmax - vmin) > 0.6  # magma is light at the top of its scale
                ax.text(j, i, _short(v, digits), ha="center", va="center", fontsize=cell_size,
                        color="black" if bright else "white")  # fmt: skip
    bar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03)
    if auto:  # on a second line: a long label along a short bar would be clipped
        colorbar_label += f"\nauto range {vmin:.{digits}f}–{vmax:.{digits}f}"
    longest = max(len(line) for line in colorbar_label.splitlines())
    bar.set_label(colorbar_label, fontsize=float(np.clip(0.85 * 72 * (height - 0.9) / (0.55 * longest), 6, 11)))
    bar.ax.tick_params(labelsize=9)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    return out


def _short(v: float, digits: int = 2) -> str:
    """0.934 → ".93", 1.0 → "1.00", -0.012 → "-.01": compact cell labels (``digits`` decimals)."""
    text = f"{v:.{digits}f}"
    return text.replace("0.", ".", 1) if text.startswith(("0.", "-0.")) else text
