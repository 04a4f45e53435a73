"""A PNG grid of a few evaluation items: image, true mask, predicted mask."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from diffprobe.extract.sources.decode import load_image
from diffprobe.probes.dense.source import DenseSource
from diffprobe.store.layout import IGNORE_INDEX


@torch.no_grad()
def write_grid(head: nn.Module, source: DenseSource, path: str | Path, n_classes: int, device: str,
               class_names: list[str] | None = None, items: int = 8) -> Path:  # fmt: skip
    """Rows: ``items`` items spread evenly over ``source``; columns: the image (from the store's recorded
    path, blank where it cannot be read), the truth, the prediction (ignored pixels white) — of view 0
    (the evaluation transform) in a store with views; a legend names the classes shown."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = source.rows[np.linspace(0, len(source.rows) - 1, min(items, len(source.rows))).astype(int)]  # spread over the split
    maps, masks = next(replace(source, rows=rows, every_view=False).batches(len(rows)))  # view 0: the image as shown
    pred = head.to(device).eval()([m.to(device) for m in maps], source.mask_size).argmax(1).cpu().numpy()
    paths = source.store.paths(source.split)[rows]
    cmap = plt.get_cmap("tab20", max(n_classes, 2))
    fig, axes = plt.subplots(len(masks), 3, figsize=(6, 2 * len(masks)), squeeze=False)
    for i, ax in enumerate(axes):
        try:
            img = (load_image(str(paths[i]), source.mask_size).transpose(1, 2, 0) + 1) / 2
        except OSError:
            img = np.ones((source.mask_size, source.mask_size, 3))
        truth = np.ma.masked_equal(masks[i].numpy(), IGNORE_INDEX)
        for a, what, title in ((ax[0], img, "image"), (ax[1], truth, "truth"), (ax[2], pred[i], "prediction")):
            a.imshow(what, cmap=None if what is img else cmap, vmin=0, vmax=n_classes - 1, interpolation="nearest")
            a.set_xticks([])
            a.set_yticks([])
            if i == 0:
                a.set_title(title, fontsize=10)
    from matplotlib.patches import Patch

    names = class_names if class_names and len(class_names) == n_classes else [str(i) for i in range(n_classes)]
    shown = sorted({int(v) for v in np.unique(pred)} | {int(v) for v in np.unique(masks.numpy()) if v != IGNORE_INDEX})
    fig.legend(handles=[Patch(color=cmap(c), label=names[c]) for c in shown], loc="lower center", ncol=min(4, len(shown)),
               fontsize=8, frameon=False)  # fmt: skip
    fig.tight_layout(rect=(0, 0.04 + 0.02 * ((len(shown) - 1) // 4), 1, 1))
    out = Path(path)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
