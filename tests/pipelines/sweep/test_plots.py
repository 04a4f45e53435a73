"""The sweep figures tell no story the numbers do not (issue 12, item 8): a labelled baseline, y axes
with a minimum span that include it, ticks only at measured values, bars for a single value.

Figures are checked through their matplotlib artists (captured when they are saved), never pixels.
"""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from diffprobe.cli import main
from diffprobe.pipelines.sweep.plots import MIN_SPAN, plot_sweep, y_limits
from diffprobe.store.layout import FeatureKey


def row(t: int, block: int, pool: str, top1: float) -> tuple:
    """(key, score): what a sweep hands its plots."""
    return (FeatureKey.of(t, block, pool), top1)


def ticks(ax) -> list[str]:
    return [label.get_text() for label in ax.get_xticklabels()]


def cross_rows() -> list[dict]:
    """A cross-shaped sweep like the demo's: blocks 7, 10, 13 at t=90; t 10…500 at block 13; pools 1, 2."""
    rows = [row(90, b, "2", a) for b, a in ((7, 0.842), (10, 0.864), (13, 0.874))]
    rows += [row(t, 13, "2", a) for t, a in ((10, 0.85), (50, 0.868), (150, 0.87), (300, 0.86), (500, 0.83))]
    return rows + [row(90, 13, "1", 0.866)]


def test_baseline_is_a_labelled_line_inside_the_y_range(figures, tmp_path):
    plot_sweep(cross_rows(), tmp_path, "logistic", baseline=0.81)
    for name in ("acc_vs_t.png", "acc_vs_block.png", "acc_vs_pool.png"):
        ax = figures[name].axes[0]
        ref = [ln for ln in ax.get_lines() if ln.get_label() == "raw pixels (81.0%)"]
        assert len(ref) == 1 and list(ref[0].get_ydata()) == [81.0, 81.0], name
        assert "raw pixels (81.0%)" in [t.get_text() for t in ax.get_legend().get_texts()]
        lo, hi = ax.get_ylim()
        assert lo < 81.0 < hi and hi - lo >= MIN_SPAN and 0 <= lo and hi <= 100, (name, lo, hi)


def test_without_a_baseline_no_reference_line(figures, tmp_path):
    plot_sweep(cross_rows(), tmp_path, "logistic")
    ax = figures["acc_vs_block.png"].axes[0]
    assert [ln.get_label() for ln in ax.get_lines()] == ["t = 90"]


def test_ticks_only_measured_values_and_the_long_arm_of_a_cross(figures, tmp_path):
    plot_sweep(cross_rows(), tmp_path, "logistic")
    by_block = figures["acc_vs_block.png"].axes[0]
    assert ticks(by_block) == ["7", "10", "13"]  # not 8, 9, 11, 12
    by_t = figures["acc_vs_t.png"].axes[0]
    assert ticks(by_t) == ["10", "50", "90", "150", "300", "500"] and by_t.get_xscale() == "linear"
    assert [ln.get_label() for ln in by_t.get_lines()] == ["block 13"]  # blocks measured at one t only are left out
    assert ticks(figures["acc_vs_pool.png"].axes[0]) == ["1", "2"]


def test_crowded_timesteps_get_a_square_root_axis(figures, tmp_path):
    plot_sweep([row(t, 13, "1", 0.8 + t / 10_000) for t in (0, 10, 30, 500, 900)], tmp_path)
    by_t = figures["acc_vs_t.png"].axes[0]  # 0, 10, 30 would print over each other on a linear axis
    assert by_t.get_xscale() == "function" and "square-root" in by_t.get_xlabel()
    assert ticks(by_t) == ["0", "10", "30", "500", "900"]


def test_small_differences_do_not_fill_the_axis(figures, tmp_path):
    rows = [row(90, b, "1", a) for b, a in ((10, 0.870), (11, 0.872), (12, 0.876))]  # 3 images of 500 apart
    plot_sweep(rows, tmp_path)
    lo, hi = figures["acc_vs_block.png"].axes[0].get_ylim()
    assert hi - lo >= MIN_SPAN and lo < 87.0 and hi > 87.6


@pytest.mark.parametrize(
    ("values", "expected"),
    [([87.0, 87.6], (79.8, 94.8)), ([99.0], (85.0, 100.0)), ([0.5, 2.0], (0.0, 15.0)), ([10.0, 90.0], (3.6, 96.4))],
)
def test_y_limits(values, expected):
    assert y_limits(values) == pytest.approx(expected, abs=0.01)


def test_a_single_value_is_a_bar_chart_drawn_once_and_never_repeats_a_line(figures, tmp_path):
    rows = [row(50, 10, "1", 0.86), row(150, 10, "1", 0.87)]  # one block, one pool: only acc vs t has a line
    assert set(plot_sweep(rows, tmp_path, "logistic", baseline=0.81)) == {"acc_vs_t"}
    assert set(figures) == {"acc_vs_t.png"}  # block and pool bars would repeat the line's two numbers
    one = plot_sweep([row(90, 10, "1", 0.86)], tmp_path / "one", "logistic", baseline=0.81)
    assert set(one) == {"acc_vs_block"}  # one key: one bar chart, not three copies of it
    ax = figures["acc_vs_block.png"].axes[0]
    assert len(ax.patches) == 1 and ax.get_ylim() == (0.0, 100.0)  # not 104%
    assert ticks(ax) == ["t = 90"] and "block = 10" in ax.get_xlabel()  # no fractional block ticks
    assert [t.get_text() for t in ax.texts] == ["86.0%"]
    assert any(ln.get_label() == "raw pixels (81.0%)" for ln in ax.get_lines())


def test_sweep_cli_ticks_measured_values_and_bars_a_single_block(figures, small_store, tmp_path):
    """`diffprobe sweep` on a store with blocks 10, 13 and t 50, 150: before, acc_vs_block ticked
    10, 11, 12, 13 and a sweep of one block drew fractional block ticks (9.45 …) and a y axis to 104%."""
    r = CliRunner().invoke(main, ["sweep", str(small_store), "--pool", "2", "-p", "C=0.1", "--out", str(tmp_path / "a")])
    assert r.exit_code == 0, r.output
    assert ticks(figures["acc_vs_block.png"].axes[0]) == ["10", "13"]
    assert ticks(figures["acc_vs_t.png"].axes[0]) == ["50", "150"]
    lo, hi = figures["acc_vs_t.png"].axes[0].get_ylim()
    assert hi - lo >= MIN_SPAN and hi <= 100
    figures.clear()
    r = CliRunner().invoke(main, ["sweep", str(small_store), "--blocks", "13", "--pool", "1", "-p", "C=0.1", "--out", str(tmp_path / "b")])
    assert r.exit_code == 0, r.output
    assert set(figures) == {"acc_vs_t.png"} and ticks(figures["acc_vs_t.png"].axes[0]) == ["50", "150"]
