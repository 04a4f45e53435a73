"""Images as a probe's input, for the one probe that runs the U-Net while it trains (DifFeed).

An :class:`ImageSet` is a split's items (id, path, label), optionally with their first-pass feature
maps read from a store. :func:`noisy_batch` turns a batch of it into x_t exactly as extraction does
(the paper's evaluation transform, noise a pure function of (seed, item id, t, draw)), so features of
the same image agree between a store and an online forward pass.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch import Tensor

from diffprobe.extract.noise import ForwardProcess, item_noise, q_sample
from diffprobe.extract.sources.decode import DECODE_ERRORS, load_image
from diffprobe.extract.sources.item import Item
from diffprobe.extract.sources.kinds import open_item
from diffprobe.probes.errors import ProbeError
from diffprobe.store.coverage import coverage
from diffprobe.store.layout import FeatureKey
from diffprobe.store.store import FeatureStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImageSet:
    """Items of one split and, when a store holds them, their first-pass maps.

    ``pass1`` maps a block to an (N0, C, H, W) — or (N0, K, C, H, W) with K draws kept (``draw_axis``,
    as the arrays' recorded layout says) — array of the store (lazy is fine), and ``rows`` gives each
    item's row in it. ``shape`` is (N,), so the set can stand where estimators expect X.
    """

    items: tuple[Item, ...]
    pass1: Mapping[int, Any] = field(default_factory=dict)
    rows: np.ndarray | None = None
    draw_axis: bool = False

    @property
    def shape(self) -> tuple[int]:
        return (len(self.items),)

    def __len__(self) -> int:
        return len(self.items)

    @property
    def labels(self) -> np.ndarray:
        """(N,) int64 class indices, -1 where unlabelled."""
        return np.array([it.label for it in self.items], dtype=np.int64)

    @property
    def ids(self) -> np.ndarray:
        return np.array([it.id for it in self.items])

    def subset(self, idx: Sequence[int] | np.ndarray) -> ImageSet:
        """The items at positions ``idx`` (with their pass-1 rows)."""
        idx = np.asarray(idx, dtype=np.int64)
        return replace(self, items=tuple(self.items[i] for i in idx), rows=None if self.rows is None else self.rows[idx])

    def pass1_batch(self, idx: np.ndarray, draw: int, device: torch.device) -> dict[int, Tensor] | None:
        """The stored first-pass maps of items ``idx`` for noise draw ``draw``: {block: (B, C, H, W)}; None without a store."""
        if not self.pass1 or self.rows is None:
            return None
        rows = self.rows[np.asarray(idx)]
        order = np.argsort(rows, kind="stable")
        out = {}
        for b, arr in self.pass1.items():
            got = np.asarray(arr[np.sort(rows)])  # sorted: a chunked store reads each chunk once
            got = got[np.argsort(order)]
            if self.draw_axis:
                got = got[:, draw]
            out[b] = torch.from_numpy(got.astype(np.float32)).to(device)
        return out


def noisy_batch(items: Sequence[Item], size: int, t: int, seed: int, draw: int, schedule: ForwardProcess,
                device: torch.device) -> Tensor:  # fmt: skip
    """x_t (B, 3, S, S) of ``items`` at ``t`` with noise draw ``draw``: the same values extraction feeds the U-Net.

    Raises:
        ProbeError: an image cannot be decoded (DifFeed trains only on images that decode).
    """
    x0 = np.empty((len(items), 3, size, size), dtype=np.float32)
    eps = torch.empty((len(items), 3, size, size), dtype=torch.float32)
    for i, it in enumerate(items):
        try:
            x0[i] = load_image(open_item(it), size)
        except DECODE_ERRORS as e:
            raise ProbeError(f"cannot decode {it.path} ({type(e).__name__}: {e}); remove it from the data") from None
        item_noise(it.id, t, seed, draw, (3, size, size), out=eps[i])
    return q_sample(torch.from_numpy(x0), t, eps, schedule).to(device)


def stored_pass1(store: FeatureStore, split: str, items: Sequence[Item], t: int, blocks: Sequence[int],
                 identity: Mapping[str, Any], draws: int) -> tuple[dict[int, Any], np.ndarray, bool] | None:  # fmt: skip
    """The first-pass maps of ``blocks`` at ``t`` from ``store`` when they are what an online pass
    would compute — the same model, class label and noise (seed, ``draws`` draws, each kept), the
    native maps of every block, every item present and valid — else None, with the reason logged.
    A store with V > 1 views serves its view 0: the evaluation transform with the noise of a store
    without views, which is what DifFeed feeds the U-Net.

    Returns:
        ({block: lazy (N0, [K,] C, H, W) array}, each item's row, whether the arrays have a draw axis) or None.
    """
    have = store.attrs.get("identity", {})
    why = None
    if not have:
        why = "the store records no extraction identity"
    else:
        for name in ("model", "adm_flags", "checkpoint_sha256", "class_label", "seed"):
            if have.get(name) != identity.get(name):
                why = f"its {name} is {have.get(name)!r}, this run's {identity.get(name)!r}"
                break
        else:
            if not (have.get("draws") == draws and (draws == 1 or have.get("reduce") == "none")):
                why = f"it holds {have.get('draws')} draw(s) ({have.get('reduce')}), this run needs {draws} kept"
    names = [str(FeatureKey(t, b, None)) for b in blocks]
    if why is None and split not in store.splits:
        why = f"it has no split {split!r}"
    if why is None and (missing := [n for n in names if n not in store.keys(split)]):
        why = f"it lacks {', '.join(missing)} (extract them with --pool full)"
    rows = None
    if why is None:
        pos = {str(v): i for i, v in enumerate(store.ids(split))}
        valid = np.asarray(store.valid(split), dtype=bool)
        absent = [it.id for it in items if it.id not in pos or not valid[pos[it.id]]]
        if absent:
            why = f"{len(absent)} of the items are not (validly) in it, e.g. {absent[0]!r}"
        else:
            rows = np.array([pos[it.id] for it in items], dtype=np.int64)
            pending = int((~np.isin(rows, coverage(store, split, names).rows)).sum())  # units not done: never read
            if pending:
                why, rows = f"{pending} of the items are in units its extraction has not finished", None
    if why is not None or rows is None:
        log.info("first pass computed online: the store at %s cannot serve it (%s)", store.path, why)
        return None
    views = store.views
    log.info("first pass read from %s (%s%s)", store.path, ", ".join(names), f"; view 0 of {views}" if views > 1 else "")
    layouts = {b: store.layout(split, n) for b, n in zip(blocks, names)}
    arrays = {b: layouts[b].first_view(store.read(split, n, lazy=True)) for b, n in zip(blocks, names)}
    return arrays, rows, any(lay.draws for lay in layouts.values())
