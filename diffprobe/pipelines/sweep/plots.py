"""Sweep plots in the style of the paper's ablations, drawn on matplotlib's Agg canvas (no pyplot).

Each function takes the tidy sweep rows (dicts with t, block, pool, top1) and writes one figure:
accuracy vs t (a line per block), accuracy vs block (a line per t), accuracy vs pool size (a line per
block, at the best t). Cells missing from the sweep are simply absent from the lines.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from diffprobe.store.layout import parse_pool, pool_order

log = logging.getLogger(__name__)

Row = dict[str, Any]


def _pool_order(label: Any) -> int:
    """Sort key of a pool as the tidy rows write it (``"2"``, ``"full"``): sizes up, the native map last."""
    return pool_order(parse_pool(str(label)))


def _extracted(rows: Iterable[Row]) -> list[Row]:
    """Rows of single extracted keys (t, block and pool all set) with a top-1."""
    out = []
    for r in rows:
        if r.get("top1") is None or "+" in str(r.get("key", "")):
            continue
        if r.get("t") in (None, "") or r.get("block") in (None, ""):
            continue
        out.append({**r, "t": int(r["t"]), "block": int(r["block"]), "pool": str(r["pool"])})
    return out


def _best(rows: list[Row]) -> Row:
    return max(rows, key=lambda r: r["top1"])


def _lines(
    rows: list[Row], x: str, series: str, fixed: dict[str, Any], x_order: Callable[[Any], Any] = lambda v: v
) -> dict[Any, tuple[list[Any], list[float]]]:
    sel = [r for r in rows if all(r[k] == v for k, v in fixed.items())]
    out: dict[Any, tuple[list[Any], list[float]]] = {}
    for s in sorted({r[series] for r in sel}, key=x_order if series == "pool" else (lambda v: v)):
        pts = sorted(((r[x], r["top1"]) for r in sel if r[series] == s), key=lambda p: x_order(p[0]))
        out[s] = ([p[0] for p in pts], [100 * p[1] for p in pts])
    return out


def _figure(
    lines: dict[Any, tuple[list[Any], list[float]]], xlabel: str, label: Callable[[Any], str], title: str, path: Path, categorical: bool = False
) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    cats: list[str] = []
    if categorical:
        for xs, _ in lines.values():
            for v in xs:
                if str(v) not in cats:
                    cats.append(str(v))
        cats.sort(key=_pool_order)
    for s, (xs, ys) in lines.items():
        pos = [cats.index(str(v)) for v in xs] if categorical else xs
        ax.plot(pos, ys, marker="o", label=label(s))
    if categorical:
        ax.set_xticks(range(len(cats)), cats)
    else:
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(xlabel)
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if lines:
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def plot_sweep(rows: Sequence[Row], out_dir: str | Path, probe: str = "") -> dict[str, Path]:
    """Write ``acc_vs_t.png``, ``acc_vs_block.png`` and ``acc_vs_pool.png`` into ``out_dir``.

    Accuracy vs t and vs block use the pool size of the best key; accuracy vs pool uses its t.
    Returns {figure name: path}; figures with no data are skipped.
    """
    ext = _extracted(rows)
    if not ext:
        log.warning("no extracted (t, block, pool) rows to plot")
        return {}
    out = Path(out_dir)
    best = _best(ext)
    tag = f"{probe} probe, " if probe else ""
    files = {
        "acc_vs_t": _figure(
            _lines(ext, "t", "block", {"pool": best["pool"]}), "timestep t", lambda b: f"block {b}",
            f"{tag}pool {best['pool']}", out / "acc_vs_t.png",
        ),
        "acc_vs_block": _figure(
            _lines(ext, "block", "t", {"pool": best["pool"]}), "block", lambda t: f"t = {t}",
            f"{tag}pool {best['pool']}", out / "acc_vs_block.png",
        ),
        "acc_vs_pool": _figure(
            _lines(ext, "pool", "block", {"t": best["t"]}, _pool_order), "pool size p (p × p)", lambda b: f"block {b}",
            f"{tag}t = {best['t']}", out / "acc_vs_pool.png", categorical=True,
        ),
    }
    log.info("wrote %s", ", ".join(str(p) for p in files.values()))
    return files
