"""``store show --views``: a PNG grid of an item's views as the store fed them, and its stored masks."""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from diffprobe.pipelines.extraction.show import ItemRecord, find_item, item_record, item_views, pick_split
from diffprobe.store.layout import IGNORE_INDEX
from diffprobe.store.store import open_store


@dataclass
class ShownItem:
    """What :func:`show_item` found and wrote.

    Attributes:
        views: (V, S, S, 3) uint8 views as extraction fed them (None without ``views``).
        masks: (V, S, S) uint8 masks as stored (None when the split has none).
        png: the grid written (None without ``views``).
    """

    record: ItemRecord
    views: np.ndarray | None = None
    masks: np.ndarray | None = None
    png: Path | None = None

    def lines(self) -> list[str]:
        """The record, then (with views) where the grid went."""
        out = self.record.lines()
        if self.png is None:
            return out
        if self.record.views == 1:
            out.append("note: the store has one view per item (extract with --views V to cache augmented views); the grid shows view 0")
        return [*out, f"wrote {self.png}"]


def default_png(store: str | Path, item_id: str) -> Path:
    """``<store name>-<item>-views.png`` in the current directory (the item id made a safe file name)."""
    name = Path(store).name
    for ext in (".zarr", ".h5", ".hdf5"):
        name = name.removesuffix(ext)
    stem = re.sub(r"\.(png|jpe?g|bmp|gif|tiff?|webp|ppm|pgm|pbm)$", "", item_id, flags=re.I)
    return Path(f"{name}-{re.sub(r'[^A-Za-z0-9._-]+', '_', stem).strip('_') or 'item'}-views.png")


def show_item(path: str | Path, item: str, *, split: str | None = None, views: bool = False,
              data: str | None = None, out: str | Path | None = None) -> ShownItem:  # fmt: skip
    """Look ``item`` up in the store at ``path`` (an id, a row ``#12``, or the unique id ending in
    ``/item``) and, with ``views``, re-create its views and write them as a grid to ``out``
    [default: :func:`default_png`].

    Raises:
        StoreKeyError: an unknown split or item.  DataError: the image cannot be read again (pass ``data``).
    """
    with open_store(path) as s:
        sp = pick_split(s, split)
        rec = item_record(s, sp, find_item(s, sp, item))
        if not views:
            return ShownItem(rec)
        pixels = item_views(s, sp, rec.index, data)
        masks = s.masks(sp, slice(rec.index, rec.index + 1))[0] if s.has_masks(sp) else None
    if masks is not None and masks.ndim == 2:  # a store with one view keeps (N, S, S) masks
        masks = masks[None]
    titles = ["view 0 (eval)"] + [f"view {v}: {rec.view_text(v, digits=2)}" for v in range(1, len(pixels))]
    png = write_view_grid(pixels, titles, masks, out or default_png(path, rec.id), f"{rec.id} ({rec.split}, #{rec.index})")
    return ShownItem(rec, pixels, masks, png)


def write_view_grid(views: np.ndarray, titles: list[str], masks: np.ndarray | None, out: str | Path, suptitle: str = "") -> Path:
    """One row of V panels, the (V, S, S, 3) uint8 ``views`` titled ``titles``; with (V, S, S) uint8
    ``masks`` a second row, each view's mask (class colours, ignored pixels white)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(views)
    rows = 1 if masks is None else 2
    fig, axes = plt.subplots(rows, n, figsize=(max(2.0 * n, 3.0), 2.3 * rows + 0.4), squeeze=False)
    for v in range(n):
        ax = axes[0, v]
        ax.imshow(views[v], interpolation="nearest")
        # wrap between parameters, never inside one ("no flip"): a no-break space holds each together
        lines = textwrap.wrap(", ".join(p.replace(" ", "\u00a0") for p in titles[v].split(", ")), 24)
        ax.set_title("\n".join(lines[:4]).replace("\u00a0", " "), fontsize=7)
    if masks is not None:
        top = int(masks[masks != IGNORE_INDEX].max(initial=1))
        for v in range(n):
            axes[1, v].imshow(np.ma.masked_equal(masks[v], IGNORE_INDEX), cmap="tab20", vmin=0, vmax=max(top, 1), interpolation="nearest")
            axes[1, v].set_title(f"mask {v}", fontsize=7)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    if suptitle:
        fig.suptitle(suptitle, fontsize=8)
    fig.tight_layout()
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
