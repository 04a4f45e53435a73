"""Sweep plots in the style of the paper's ablations, drawn on matplotlib's Agg canvas (no pyplot).

:func:`plot_sweep` takes a sweep's results (each key's :class:`~diffprobe.store.layout.FeatureKey`
and score, typed as the run made them: nothing is read back from a table) and writes three figures:
score vs t (a line per block), score vs block (a line per t), score vs pool size (a line per block,
at one t). Cells missing from the sweep are simply absent from the lines, and a
cross-shaped sweep (every block at one t, every t at one block) plots its arms.

The figures are drawn so that they cannot tell a story the numbers do not: the x axis ticks only
the measured values; the y axis spans at least :data:`MIN_SPAN` points (and includes the baseline),
so a difference of one or two images does not look like a trend; an axis with a single measured
value becomes a bar chart instead of a degenerate line; a measured baseline (the raw pixels) is a
labelled reference line.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from diffprobe.store.layout import FeatureKey, pool_label, pool_order

if TYPE_CHECKING:
    from matplotlib.axes import Axes

log = logging.getLogger(__name__)

Row = dict[str, Any]
#: One line of a figure: its x values and its accuracies in percent.
Line = tuple[list[Any], list[float]]

#: The least span of a y axis, in accuracy points.
MIN_SPAN = 15.0
#: Ticks closer than this fraction of a numeric axis switch it to a square-root scale
#: (t = 10, 30, 50 next to t = 500 would otherwise print over each other).
CROWDED = 0.045


@dataclass(frozen=True)
class Baseline:
    """A reference score drawn as a horizontal line: ``score`` a fraction in [0, 1]."""

    score: float
    label: str = "raw pixels"

    @property
    def text(self) -> str:
        return f"{self.label} ({100 * self.score:.1f}%)"


def _points(scores: Iterable[tuple[FeatureKey, float]]) -> list[Row]:
    """{t, block, pool, score} of each extracted key measured."""
    return [{"t": k.t, "block": k.block, "pool": k.pool, "score": float(s)} for k, s in scores]


def _fixed(rows: list[Row], field: str, x: str, best: Row) -> Any:
    """The value of ``field`` to hold fixed in a plot along ``x``: the one measured at the most ``x``
    values (so a cross-shaped sweep plots its long arm), ties going to the best key's value."""
    counts: dict[Any, set[Any]] = {}
    for r in rows:
        counts.setdefault(r[field], set()).add(r[x])
    return max(counts, key=lambda v: (len(counts[v]), v == best[field]))


def _lines(rows: list[Row], x: str, series: str, fixed: dict[str, Any], x_order: Callable[[Any], Any] = lambda v: v) -> dict[Any, Line]:
    """{series value: (x values, top-1 in %)} of the rows that match ``fixed``. Series measured at a
    single x are left out when others have a line, so a cross-shaped sweep does not scatter points."""
    sel = [r for r in rows if all(r[k] == v for k, v in fixed.items())]
    out: dict[Any, Line] = {}
    for s in sorted({r[series] for r in sel}, key=x_order if series == "pool" else (lambda v: v)):
        pts = sorted(((r[x], r["score"]) for r in sel if r[series] == s), key=lambda p: x_order(p[0]))
        out[s] = ([p[0] for p in pts], [100 * p[1] for p in pts])
    if any(len(xs) > 1 for xs, _ in out.values()):
        out = {s: line for s, line in out.items() if len(line[0]) > 1}
    return out


def y_limits(values: Sequence[float], min_span: float = MIN_SPAN) -> tuple[float, float]:
    """A y range (percent) that holds ``values`` with a margin, spans at least ``min_span`` points
    and stays inside [0, 100]."""
    lo, hi = min(values), max(values)
    pad = max(0.08 * (hi - lo), 1.0)
    lo, hi = lo - pad, hi + pad
    if hi - lo < min_span:
        mid = (lo + hi) / 2
        lo, hi = mid - min_span / 2, mid + min_span / 2
    if hi > 100:
        lo, hi = lo - (hi - 100), 100.0
    if lo < 0:
        lo, hi = 0.0, min(100.0, hi - lo)
    return lo, hi


def _numeric_axis(ax: Axes, xs: list[Any], xlabel: str) -> None:
    """Tick exactly the measured values; a square-root scale when linear ticks would collide."""
    ticks = sorted(set(xs))
    gaps = [b - a for a, b in zip(ticks, ticks[1:])]
    if ticks[0] >= 0 and gaps and min(gaps) < CROWDED * (ticks[-1] - ticks[0]):
        import numpy as np

        ax.set_xscale("function", functions=(np.sqrt, np.square))
        xlabel += " (square-root scale)"
    ax.set_xticks(ticks, [str(v) for v in ticks])
    ax.minorticks_off()
    ax.set_xlabel(xlabel)


def _draw_baseline(ax: Axes, baseline: Baseline) -> None:
    y = 100 * baseline.score
    ax.axhline(y, color="0.35", linestyle="--", linewidth=1.2, label=baseline.text, zorder=1)


def _bars(ax: Axes, lines: dict[Any, Line], label: Callable[[Any], str], xlabel: str) -> None:
    """One bar per series: the chart for an axis with a single measured value."""
    names = [label(s) for s in lines]
    heights = [ys[0] for _, ys in lines.values()]
    bars = ax.bar(range(len(names)), heights, color=[f"C{i}" for i in range(len(names))], width=0.6, zorder=2)
    ax.bar_label(bars, [f"{h:.1f}%" for h in heights], fontsize=8, padding=2)
    ax.set_xticks(range(len(names)), names)
    ax.set_xlim(-0.8, len(names) - 0.2)
    value = next(iter(lines.values()))[0][0]
    ax.set_xlabel(f"{xlabel} = {pool_label(value)} (the only value measured)")


def _figure(lines: dict[Any, Line], xlabel: str, label: Callable[[Any], str], title: str, path: Path,
            categorical: bool = False, baseline: Baseline | None = None, metric: str = "top-1 accuracy (%)") -> Path:  # fmt: skip
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.2), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    xs_all = [v for xs, _ in lines.values() for v in xs]
    ys_all = [y for _, ys in lines.values() for y in ys]
    single = len({str(v) for v in xs_all}) == 1
    if single:
        _bars(ax, lines, label, xlabel)
        ax.set_ylim(0, 100)
    else:
        cats = sorted(set(xs_all), key=pool_order) if categorical else []
        for s, (xs, ys) in lines.items():
            ax.plot([cats.index(v) for v in xs] if categorical else xs, ys, marker="o", label=label(s), zorder=3)
        if categorical:
            ax.set_xticks(range(len(cats)), [pool_label(c) for c in cats])
            ax.set_xlabel(xlabel)
        else:
            _numeric_axis(ax, xs_all, xlabel)
        ax.set_ylim(*y_limits(ys_all + ([100 * baseline.score] if baseline else [])))
    if baseline is not None:
        _draw_baseline(ax, baseline)
    ax.set_ylabel(metric)
    ax.set_title(title)
    ax.grid(alpha=0.3, zorder=0)
    if not single or baseline is not None:
        ax.legend(fontsize=8, loc="lower right" if single else "best", framealpha=0.9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def plot_sweep(scores: Sequence[tuple[FeatureKey, float]], out_dir: str | Path, probe: str = "", baseline: float | None = None,
               baseline_label: str = "raw pixels", metric: str = "top-1 accuracy (%)") -> dict[str, Path]:  # fmt: skip
    """Write ``acc_vs_t.png``, ``acc_vs_block.png`` and ``acc_vs_pool.png`` into ``out_dir``.

    Each figure holds the other fields fixed at the value measured most along its x axis (the best
    key's on a full grid): accuracy vs t and vs block at one pool size, accuracy vs pool at one t.
    ``scores``: (key, score) of each key measured, the score a fraction (top-1, or mIoU: ``metric``
    names the y axis). ``baseline`` (a fraction, e.g. the same probe on the raw pixels of the same
    items) is drawn as a dashed reference line labelled ``baseline_label`` on every figure.
    A figure whose x axis was measured at one value only is left out when another figure has a line
    (it would repeat those numbers as bars); a sweep of one key draws one bar chart.
    Returns {figure name: path} of the figures drawn.
    """
    ext = _points(scores)
    if not ext:
        log.warning("no extracted (t, block, pool) rows to plot")
        return {}
    out = Path(out_dir)
    best = max(ext, key=lambda r: r["score"])
    tag = f"{probe} probe, " if probe else ""
    ref = None if baseline is None else Baseline(baseline, baseline_label)
    pool_t, pool_block, t_pool = _fixed(ext, "pool", "t", best), _fixed(ext, "pool", "block", best), _fixed(ext, "t", "pool", best)
    plans = {  # name: (lines, x label, series label, title, categorical)
        "acc_vs_t": (_lines(ext, "t", "block", {"pool": pool_t}), "timestep t", lambda b: f"block {b}", f"{tag}pool {pool_label(pool_t)}", False),
        "acc_vs_block": (_lines(ext, "block", "t", {"pool": pool_block}), "block", lambda t: f"t = {t}",
                         f"{tag}pool {pool_label(pool_block)}", False),
        "acc_vs_pool": (_lines(ext, "pool", "block", {"t": t_pool}, pool_order), "pool size p (p × p)", lambda b: f"block {b}",
                        f"{tag}t = {t_pool}", True),
    }  # fmt: skip
    # An axis measured at one value only gives a bar chart of the other series: the same numbers a line
    # of another figure shows, or (one key) the same bars twice. Such a figure is drawn only when no
    # figure has a line, and then once.
    lined = [n for n, (lines, *_) in plans.items() if len({str(x) for xs, _ in lines.values() for x in xs}) > 1]
    drawn = lined or ["acc_vs_block"]
    files = {n: _figure(lines, xl, lab, title, out / f"{n}.png", categorical=cat, baseline=ref, metric=metric)
             for n, (lines, xl, lab, title, cat) in plans.items() if n in drawn}  # fmt: skip
    skipped = sorted(set(plans) - set(drawn))
    if skipped:
        log.info("sweep plots: %s not drawn (one measured value: the figure would repeat another's numbers)", ", ".join(skipped))
    log.debug("wrote %s", ", ".join(str(p) for p in files.values()))
    return files
