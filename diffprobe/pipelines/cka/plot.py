"""CKA heatmaps, drawn with matplotlib's Agg canvas (no pyplot, no global backend switch)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np


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
    annotate_max_cells: int = 400,
) -> Path:
    """Write ``values`` (L, M) as a heatmap PNG with labelled axes and a colour bar; returns the path.

    Rows run top to bottom in the given order. Cells carry their value when there are at most
    ``annotate_max_cells`` of them.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows, cols = values.shape
    if (rows, cols) != (len(row_labels), len(col_labels)):
        raise ValueError(f"expected {rows} row and {cols} column labels, got {len(row_labels)} and {len(col_labels)}")
    cell = 0.42 if max(rows, cols) <= 24 else 0.22
    fig = Figure(figsize=(min(max(5.0, 2.5 + cell * cols), 30), min(max(3.5, 1.8 + cell * rows), 30)), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    finite = values[np.isfinite(values)]
    vmin = min(0.0, float(finite.min())) if finite.size else 0.0
    im = ax.imshow(values, cmap="magma", vmin=vmin, vmax=1.0, interpolation="nearest", aspect="auto")
    small = max(rows, cols) > 24
    ax.set_xticks(range(cols), [str(c) for c in col_labels], rotation=90 if small or max(map(len, col_labels)) > 4 else 0,
                  fontsize=6 if small else 8)
    ax.set_yticks(range(rows), [str(r) for r in row_labels], fontsize=6 if small else 8)
    ax.set_xlabel(col_axis)
    ax.set_ylabel(row_axis)
    if title:
        ax.set_title(title, fontsize=9)
    if rows * cols <= annotate_max_cells:
        for i in range(rows):
            for j in range(cols):
                v = values[i, j]
                ax.text(j, i, _short(v), ha="center", va="center", fontsize=5 if max(rows, cols) > 12 else 7,
                        color="black" if v > 0.6 else "white")
    bar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03)
    bar.set_label(colorbar_label)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    return out


def _short(v: float) -> str:
    """0.934 → ".93", 1.0 → "1.00", -0.012 → "-.01": compact cell labels."""
    text = f"{v:.2f}"
    return text.replace("0.", ".", 1) if text.startswith(("0.", "-0.")) else text
