"""CKA heatmaps (issue 12, item 8): readable cell numbers and title at the figure's size, and an
auto-ranged colour scale that says so in the colour bar. Checked through matplotlib artists."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from diffprobe.cli import main
from diffprobe.errors import ConfigError
from diffprobe.pipelines.cka.plot import color_limits, heatmap
from tests.helpers import extract_config, make_manifest


@pytest.fixture(scope="module")
def all_blocks_store(tmp_path_factory):
    """Every block of the bundled model at t=90, pool 1, on 20 val images (the demo's CKA figure, small)."""
    import diffprobe

    d = tmp_path_factory.mktemp("blocks")
    manifest = make_manifest(d / "m.csv", per_class_train=0, per_class_val=2)
    out = d / "all.zarr"
    diffprobe.extract_features(extract_config(manifest, out, timesteps=(90,), blocks=tuple(range(1, 20)), pools=(1,)), progress=False)
    return out


def cell_texts(ax) -> list:
    return [t for t in ax.texts if t.get_text()]


def near_one(n: int = 6) -> np.ndarray:
    v = 0.97 + 0.03 * np.random.default_rng(0).random((n, n))
    v = (v + v.T) / 2
    np.fill_diagonal(v, 1.0)
    return v


def test_color_limits():
    v = near_one()
    assert color_limits(v, "unit") == (0.0, 1.0, False)
    lo, hi, auto = color_limits(v, "auto")
    assert auto and lo == pytest.approx(v.min()) and hi == 1.0
    assert color_limits(np.ones((2, 2)), "auto") == (0.0, 1.0, False)  # nothing to range over
    assert color_limits(np.array([[1.0, -0.02]]), "unit")[0] == -0.02  # unbiased estimates can dip below 0
    with pytest.raises(ConfigError, match="expected a colour range in auto, unit, got 'log'"):
        color_limits(v, "log")


def test_auto_range_is_stated_in_the_colour_bar(figures, tmp_path):
    v = near_one()
    labels = ["10", "50", "90", "150", "300", "500"]
    heatmap(v, labels, labels, tmp_path / "auto.png", colorbar_label="CKA (linear, biased)", color_range="auto")
    fig = figures["auto.png"]
    assert fig.axes[0].images[0].get_clim() == pytest.approx((v.min(), 1.0))
    assert fig.axes[1].get_ylabel() == f"CKA (linear, biased)\nauto range {v.min():.3f}–1.000"
    label = fig.axes[1].yaxis.label  # the whole label lies inside the figure (not clipped at its edges)
    fig.canvas.draw()
    box, frame = label.get_window_extent(), fig.bbox
    assert frame.y0 <= box.y0 and box.y1 <= frame.y1 and box.x1 <= frame.x1
    texts = [t.get_text() for t in cell_texts(fig.axes[0])]
    assert "1.000" in texts and len(set(texts)) > 10  # three decimals tell the cells apart
    heatmap(v, labels, labels, tmp_path / "unit.png", colorbar_label="CKA (linear, biased)", color_range="unit")
    fig = figures["unit.png"]
    assert fig.axes[0].images[0].get_clim() == (0.0, 1.0) and fig.axes[1].get_ylabel() == "CKA (linear, biased)"


@pytest.mark.parametrize("n", [2, 6, 19])
def test_fonts_are_readable_at_every_size(figures, tmp_path, n):
    labels = [str(i + 1) for i in range(n)]
    title = "blocks × blocks, t=90, pool 1, split val (N=500)"
    heatmap(np.eye(n) * 0.5 + 0.5, labels, labels, tmp_path / f"{n}.png", title=title)
    ax = figures[f"{n}.png"].axes[0]
    cells = cell_texts(ax)
    assert len(cells) == n * n and min(t.get_fontsize() for t in cells) >= 8  # was 5 pt from 13 cells up
    assert ax.title.get_fontsize() >= 11  # was 9 pt
    assert min(t.get_fontsize() for t in ax.get_xticklabels()) >= 8
    # the numbers fit their cells: a label is narrower than the cell (in points)
    width_in = figures[f"{n}.png"].get_size_inches()[0]
    assert max(len(t.get_text()) for t in cells) * 0.6 * cells[0].get_fontsize() < 72 * width_in / n


def test_cka_blocks_cli_heatmap_is_readable(figures, all_blocks_store, tmp_path):
    """`diffprobe cka blocks` on every block of the bundled model: a 19×19 map whose cell numbers were 5 pt."""
    r = CliRunner().invoke(main, ["cka", "blocks", str(all_blocks_store), "--t", "90", "--out", str(tmp_path / "b")])
    assert r.exit_code == 0, r.output
    ax = figures["cka.png"].axes[0]
    assert len(cell_texts(ax)) == 19 * 19 and min(t.get_fontsize() for t in cell_texts(ax)) >= 8
    assert ax.title.get_fontsize() >= 12
    meta = json.loads((tmp_path / "b" / "cka.json").read_text())
    assert meta["heatmap"] == {"color_range": "unit", "vmin": 0.0, "vmax": 1.0}  # blocks: the unit scale by default


def test_cka_timesteps_cli_auto_range_by_default(figures, small_store, tmp_path):
    """`diffprobe cka timesteps`: values near 1 on a fixed 0–1 scale looked blank; now auto-ranged, and said so."""
    r = CliRunner().invoke(main, ["cka", "timesteps", str(small_store), "--split", "val", "--block", "13", "--out", str(tmp_path / "t")])
    assert r.exit_code == 0, r.output
    meta = json.loads((tmp_path / "t" / "cka.json").read_text())
    values = np.array(meta["cka"])
    assert meta["heatmap"]["color_range"] == "auto" and meta["heatmap"]["vmin"] == pytest.approx(values.min())
    fig = figures["cka.png"]
    assert "auto range" in fig.axes[1].get_ylabel() and fig.axes[0].images[0].get_clim()[0] == pytest.approx(values.min())
    r = CliRunner().invoke(main, ["cka", "timesteps", str(small_store), "--split", "val", "--block", "13", "--color-range", "unit",
                                  "--out", str(tmp_path / "u")])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert figures["cka.png"].axes[0].images[0].get_clim() == (0.0, 1.0) and "auto" not in figures["cka.png"].axes[1].get_ylabel()
    r = CliRunner().invoke(main, ["cka", "timesteps", str(small_store), "--color-range", "log"])
    assert r.exit_code == 2 and "'log' is not one of 'auto', 'unit'" in r.output
