"""One item of a store (``store show``): its record, and its views re-created as extraction fed them.

The record (id, label, path, validity, stored shapes, view parameters) comes from the store alone.
The views are re-made from the recorded source: the image is read again from the data the store
was extracted from (or ``data``, where it moved), decoded as extraction decodes it, and put through
the recorded view parameters — view 0 the evaluation centre crop, views 1..V−1 the augmentation.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from diffprobe.errors import DataError, DiffprobeError, StoreError, StoreKeyError
from diffprobe.store.layout import FeatureKey
from diffprobe.store.store import FeatureStore

log = logging.getLogger(__name__)

EVAL_VIEW = "centre crop (evaluation)"


def pick_split(store: FeatureStore, split: str | None) -> str:
    """``split``, checked; None: the store's only split (an error naming them when there are several)."""
    if split is not None:
        store.n_items(split)  # unknown splits raise, naming the store's splits
        return split
    if len(store.splits) != 1:
        raise StoreKeyError(f"{store.path} has splits {', '.join(store.splits) or 'none'}: pass --split")
    return store.splits[0]


def find_item(store: FeatureStore, split: str, item: str) -> int:
    """The row of ``item`` in ``split``: an item id, a row ``#12``, or the unique id ending in ``/ITEM``."""
    ids = [str(i) for i in store.ids(split)]
    if item in ids:
        return ids.index(item)
    if item.startswith("#") and item[1:].isdigit():
        row = int(item[1:])
        if row >= len(ids):
            raise StoreKeyError(f"row {item} is past the end of split {split!r} of {store.path} ({len(ids)} items: #0..#{len(ids) - 1})")
        return row
    ends = [i for i, x in enumerate(ids) if x.endswith("/" + item)]
    if len(ends) == 1:
        return ends[0]
    shown = ", ".join(repr(x) for x in ids[:3]) + (", …" if len(ids) > 3 else "")
    why = f"{len(ends)} ids end in '/{item}'" if ends else f"no item {item!r}"
    raise StoreKeyError(f"{why} in split {split!r} of {store.path}: it has {len(ids)} items ({shown}); "
                        f"give an id or a row #0..#{max(len(ids) - 1, 0)}")  # fmt: skip


@dataclass
class ItemRecord:
    """What a store holds for one item.

    Attributes:
        arrays: {array name: (its row's shape, dtype, axis names or "")}.
        params: (V, P) float64 view parameters (row 0 NaN), None for a store with one view.
        view_how: {"augment", "fields", "size", "seed"} of the views, None for one view.
        mask: the shape of the item's stored mask ((V, S, S) or (S, S)), None without masks.
    """

    store: str
    split: str
    index: int
    n_items: int
    id: str
    label: int
    class_name: str
    path: str
    valid: bool | None
    arrays: dict[str, tuple[tuple[int, ...], str, str]]
    views: int
    view_how: dict[str, Any] | None
    params: np.ndarray | None
    mask: tuple[int, ...] | None

    def view_text(self, v: int, digits: int = 3) -> str:
        """What view ``v`` is: the evaluation crop, or its named parameters (``digits`` decimals)."""
        if v == 0 or self.params is None or self.view_how is None:
            return EVAL_VIEW
        return describe_params(self.view_how["fields"], self.params[v], digits)

    def lines(self) -> list[str]:
        """The record as ``store show`` prints it."""
        label = "none" if self.label < 0 else f"{self.label} ({self.class_name})" if self.class_name else str(self.label)
        out = [
            f"item {self.id} (split {self.split}, row #{self.index} of {self.n_items}, {self.store})",
            f"  label  {label}",
            f"  path   {self.path}",
            f"  valid  {_VALID[self.valid]}",
            "  arrays (this item's rows, as stored)",
        ]
        for name, (shape, dtype, axes) in self.arrays.items():
            out.append(f"    {name:<18} {'×'.join(map(str, shape)):<16} {dtype:<8} {axes}".rstrip())
        if self.mask is not None:
            out.append(f"    {'mask':<18} {'×'.join(map(str, self.mask)):<16} uint8")
        if self.view_how is None:
            return [*out, "  views  1 (the store has one view per item: the evaluation centre crop)"]
        h = self.view_how
        out.append(f"  views  {self.views} (augment {h['augment']}, size {h['size']}, seed {h['seed']})")
        return out + [f"    view {v:<3} {self.view_text(v)}" for v in range(self.views)]


_VALID = {True: "yes", False: "NO: its image could not be decoded (its feature rows are NaN)",
          None: "not known yet: its unit is not done (extraction unfinished)"}


def describe_params(fields: tuple[str, ...], params: np.ndarray, digits: int = 3) -> str:
    """``short_side=35, x=0.881, y=0.769, flip`` from an augmentation's named (P,) parameters."""
    if not fields:
        return "centre crop (augment none: the views differ in their noise only)"
    parts = []
    for name, value in zip(fields, (float(p) for p in params)):
        if name == "flip":
            parts.append("flip" if value >= 0.5 else "no flip")
        elif math.isfinite(value) and value == int(value):
            parts.append(f"{name}={int(value)}")
        else:
            parts.append(f"{name}={value:.{digits}f}")
    return ", ".join(parts)


def item_record(store: FeatureStore, split: str, index: int) -> ItemRecord:
    """The store's record of row ``index`` of ``split`` (reads one row of each side array, no features)."""
    n = store.n_items(split)
    label = int(store.labels(split)[index])
    names = store.class_names
    arrays = {}
    for name in store.keys(split):
        shape, dtype, _ = store.array_info(split, name)
        lay = store.layout(split, name)
        arrays[name] = (tuple(shape[1:]), str(dtype), lay.axes_text().replace(", ", "×") if FeatureKey.is_key(name) else "")
    how, params = None, None
    if store.has_view_params(split):
        how, rows = store.view_params(split, slice(index, index + 1))
        params = rows[0]
    done = index // store.unit_size(split) in store.markers(split)
    mask = tuple(store.masks(split, slice(index, index + 1)).shape[1:]) if store.has_masks(split) else None
    return ItemRecord(
        str(store.path), split, index, n, str(store.ids(split)[index]), label,
        names[label] if 0 <= label < len(names) else "", str(store.paths(split)[index]), bool(store.valid(split)[index]) if done else None,
        arrays, store.views, how, params, mask,
    )  # fmt: skip


def recorded_item(store: FeatureStore, split: str, index: int, data: str | None = None) -> Any:
    """The :class:`~diffprobe.extract.sources.item.Item` that row ``index`` was extracted from, found again in
    the recorded data source (``data``: where it is now, when it moved).

    Raises:
        DataError: the data (or the item in it) cannot be found; the message says to pass --data.
    """
    from diffprobe.extract.sources.discover import discover
    from diffprobe.extract.sources.item import IMAGE_EXTENSIONS, Item
    from diffprobe.pipelines.extraction.plan import index_path
    from diffprobe.pipelines.extraction.repair import recorded_config

    item_id, path = str(store.ids(split)[index]), str(store.paths(split)[index])
    label = int(store.labels(split)[index])
    p = Path(path)
    if data is None and p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file():
        return Item(item_id, path, label)  # an image file where extraction read it: no need to list the data
    if not store.config:
        raise StoreError(f"{store.path} records no extraction configuration, so not where its images are")
    config = recorded_config(store.path, {"data": data})
    where = "--data" if data is not None else "the store's recorded data"
    try:
        spec = discover(config.data, (split,), config.data_options, index_path(str(store.path)), write_index=False)
    except DataError as e:
        rel = "" if Path(config.data).is_absolute() or "://" in config.data else f", relative to where `extract` ran; here: {Path.cwd()}"
        raise DataError(f"cannot read the images of {store.path} again: {e} ({where} {config.data!r}{rel}); "
                        "pass --data with where they are now") from None  # fmt: skip
    found = [it for it in spec.splits[split] if it.id == item_id]
    if not found:
        raise DataError(f"item {item_id!r} is not in split {split!r} of {config.data} ({where}): "
                        "pass --data with the data the store was made from")  # fmt: skip
    recorded = store.attrs.get("identity", {}).get("data", {}).get(split)
    if recorded and spec.fingerprint(split) != recorded:
        log.warning("the ids or labels of split %r of %s differ from those the store was made from; "
                    "the image shown may not be the one extracted", split, config.data)  # fmt: skip
    return found[0]


def item_views(store: FeatureStore, split: str, index: int, data: str | None = None) -> np.ndarray:
    """(V, S, S, 3) uint8 views of row ``index``, exactly as extraction fed them to the model (which
    saw them as ``x / 127.5 − 1``, float32 in [-1, 1]): the image read again and decoded as RGB, view 0
    the evaluation centre crop, views 1..V−1 made from the recorded parameters.

    Raises:
        DataError: the image cannot be found or decoded (the message says to pass --data).
    """
    from PIL import Image

    from diffprobe.extract.augment import centre_crop
    from diffprobe.extract.sources.decode import DECODE_ERRORS, decode_image
    from diffprobe.extract.sources.kinds import open_item
    from diffprobe.extract.views import ViewSpec

    item = recorded_item(store, split, index, data)
    try:
        img = decode_image(open_item(item))
    except DECODE_ERRORS as e:
        raise DataError(f"cannot decode the image of {item.id!r} ({item.path}): {type(e).__name__}: {e}") from None
    if store.has_view_params(split):
        _, params = store.view_params(split, slice(index, index + 1))
        views = ViewSpec.of_store(store, split).render(img, params[0])
    else:
        views = [centre_crop(img, image_size(store, split), Image.Resampling.BICUBIC)]
    return np.stack([np.asarray(v, dtype=np.uint8) for v in views])


def image_size(store: FeatureStore, split: str) -> int:
    """The model's input size S: from the stored masks, else the recorded model's description."""
    if store.has_masks(split):
        return int(store.masks(split, slice(0, 1)).shape[-1])
    from diffprobe.extract.registry import model_spec

    cfg = store.config
    try:
        return int(model_spec(str(cfg.get("model")), cfg.get("flags") or {}, cfg.get("checkpoint")).image_size)
    except (DiffprobeError, OSError) as e:  # a model described by a checkpoint that moved, or an unknown one
        raise StoreError(f"cannot tell the input size of {cfg.get('model')!r}, the model {store.path} was made with: {e}") from None
