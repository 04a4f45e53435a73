"""The per-item layout of a stored array, written once and read back: :class:`ArrayLayout`.

An extracted array is (N, [V,] [K,] C, h, w): a view axis when the store holds V > 1 views, then a
draw axis when K > 1 noise draws were kept, then the map. Extraction computes each array's layout
once (from its plan) and records it in the array's attributes (``layout``); every reader asks the
store (:meth:`~diffprobe.store.reader.StoreReader.layout`) instead of counting dimensions. Stores
written before layouts were recorded fall back to the dimension names every array records
(``item``, ``view``, ``draw``, ``c…``, ``h…``, ``w…``); imported arrays are (N, D), read as
(N, D, 1, 1), or (N, C, H, W), or (N, K, C, H, W).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from diffprobe.errors import StoreError
from diffprobe.store.layout import FeatureKey, chunk_items

#: the lead axes an array may have between the item axis and the map, in this order
LEAD_AXES = ("view", "draw")


@dataclass(frozen=True)
class ArrayLayout:
    """(V views?, K draws?, C, h, w) of one array's item.

    Attributes:
        views: V on the view axis; 0 when the array has no view axis (one row per item).
        draws: K on the draw axis; 0 when it has none (one draw, or draws averaged).
        channels, height, width: the map (C, h, w); an imported (N, D) vector is (D, 1, 1).
        flat: the array is stored as (N, D) (imported vectors): read it as (N, D, 1, 1).
    """

    views: int
    draws: int
    channels: int
    height: int
    width: int
    flat: bool = False

    def __post_init__(self) -> None:
        if min(self.views, self.draws) < 0 or min(self.channels, self.height, self.width) < 1 or self.views == 1 or self.draws == 1:
            raise StoreError(f"expected a layout with V, K ∉ {{1}} (0: no axis) and C, h, w ≥ 1, got {self}")

    # --- shape ---------------------------------------------------------------------------------
    @property
    def lead(self) -> tuple[int, ...]:
        """The (V,) / (K,) / (V, K) axes between the item axis and the map."""
        return tuple(n for n in (self.views, self.draws) if n)

    @property
    def map_shape(self) -> tuple[int, int, int]:
        return (self.channels, self.height, self.width)

    @property
    def item_shape(self) -> tuple[int, ...]:
        """The stored shape of one item (without the item axis)."""
        return (self.channels,) if self.flat else (*self.lead, *self.map_shape)

    @property
    def has_views(self) -> bool:
        return self.views > 0

    @property
    def n_views(self) -> int:
        """Views per item (1 without a view axis)."""
        return self.views or 1

    @property
    def n_draws(self) -> int:
        """Draws per item (1 without a draw axis)."""
        return self.draws or 1

    @property
    def width_per_row(self) -> int:
        """Features of one (view, draw) row: C·h·w."""
        return self.channels * self.height * self.width

    def axes_text(self) -> str:
        """``(V×K×C×h×w)`` as named axes: ``(V, K, C, h, w)``."""
        names = [*(["V"] if self.views else []), *(["K"] if self.draws else []), "C", "h", "w"]
        return "(" + ", ".join(names) + ")" if not self.flat else "(D)"

    def check(self, shape: Sequence[int], name: str) -> None:
        """Raise :class:`StoreError` unless ``shape`` (with the item axis) is what this layout says."""
        if tuple(int(s) for s in shape[1:]) != self.item_shape:
            raise StoreError(f"array {name!r} has shape {tuple(shape)}, but its recorded layout {self.axes_text()} says "
                             f"(N, {', '.join(map(str, self.item_shape))}): its metadata was changed; "
                             "`diffprobe store verify` reports it")  # fmt: skip

    def first_view(self, array: Any) -> Any:
        """View 0 (the evaluation transform) of a stored (N, V, …) array; the array itself when it has no view axis."""
        return array[:, 0] if self.has_views else array

    def without_views(self) -> ArrayLayout:
        """The layout of :meth:`first_view`."""
        return ArrayLayout(0, self.draws, self.channels, self.height, self.width, self.flat)

    # --- recording -----------------------------------------------------------------------------
    def to_attrs(self) -> dict[str, Any]:
        return {"views": self.views, "draws": self.draws, "channels": self.channels, "height": self.height, "width": self.width,
                "flat": self.flat}  # fmt: skip

    @classmethod
    def from_attrs(cls, d: dict[str, Any]) -> ArrayLayout:
        try:
            return cls(int(d["views"]), int(d["draws"]), int(d["channels"]), int(d["height"]), int(d["width"]), bool(d.get("flat", False)))
        except (KeyError, TypeError, ValueError) as e:
            raise StoreError(f"expected a recorded layout (views, draws, channels, height, width), got {d!r} ({e})") from None

    @classmethod
    def of_map(cls, channels: int, height: int, width: int, views: int = 1, draws: int = 1) -> ArrayLayout:
        """An extracted array's layout: V views and K draws kept (1: no such axis)."""
        return cls(views if views > 1 else 0, draws if draws > 1 else 0, channels, height, width)

    @classmethod
    def from_dims(cls, dims: Sequence[str], shape: Sequence[int]) -> ArrayLayout:
        """The layout of an extracted array of an older store, from the dimension names it records."""
        names = list(dims)
        if len(names) != len(shape) or names[:1] != ["item"] or len(names) < 4:
            raise StoreError(f"expected dimension names (item, [view,] [draw,] c, h, w) for shape {tuple(shape)}, got {tuple(names)}")
        lead = {n: int(s) for n, s in zip(names[1:-3], shape[1:-3])}
        if set(lead) - set(LEAD_AXES):
            raise StoreError(f"unknown axes {sorted(set(lead) - set(LEAD_AXES))} in {tuple(names)}; expected view and/or draw")
        c, h, w = (int(s) for s in shape[-3:])
        return cls(lead.get("view", 0), lead.get("draw", 0), c, h, w)

    @classmethod
    def recorded(cls, name: str, shape: Sequence[int], attrs: dict[str, Any], dims: Sequence[str] | None = None) -> ArrayLayout:
        """The layout of array ``name`` as its store records it: the ``layout`` attribute, else (older
        stores) its dimension names, else (imported arrays) its shape; checked against ``shape``.

        Raises:
            StoreError: no usable record, or a shape that disagrees with it.
        """
        if "layout" in attrs:
            lay = cls.from_attrs(attrs["layout"])
        elif attrs.get("kind") == "feature" and dims:
            lay = cls.from_dims(dims, shape)
        elif attrs.get("kind") == "feature":
            raise StoreError(f"extracted array {name!r} records neither its layout nor its dimension names; re-extract it")
        else:
            lay = cls.imported(shape)
        lay.check(shape, name)
        return lay

    @classmethod
    def imported(cls, shape: Sequence[int]) -> ArrayLayout:
        """An imported array: (N, D) → (D, 1, 1); (N, C, H, W); (N, K, C, H, W) with K draws.

        Raises:
            StoreError: any other rank (the message says which shapes a probe reads).
        """
        sh = tuple(int(s) for s in shape)
        if len(sh) == 2:
            return cls(0, 0, sh[1], 1, 1, flat=True)
        if len(sh) == 4:
            return cls(0, 0, *sh[1:])
        if len(sh) == 5 and sh[1] > 1:
            return cls(0, sh[1], *sh[2:])
        raise StoreError(f"expected an imported array of shape (N, D), (N, C, H, W) or (N, K, C, H, W), got {sh}")


def feature_array_args(n: int, unit: int, key: FeatureKey, layout: ArrayLayout, dtype: str,
                       module: str) -> tuple[tuple[int, ...], str, int, int, tuple[str, ...], dict[str, Any]]:  # fmt: skip
    """What :meth:`~diffprobe.store.backend.Backend.create_array` takes to make the array of ``key`` in a
    split of ``n`` items in units of ``unit``: (shape, dtype, chunk rows, shard rows, dimension names,
    attributes) — chunked along N, sharded by unit, its layout recorded. Extraction creates arrays
    with it and ``store repair`` rebuilds damaged metadata with it."""
    pool = key.pool_label
    lead = [axis for axis, size in zip(LEAD_AXES, (layout.views, layout.draws)) if size]
    c, h, w = layout.map_shape
    dims = ("item", *lead, f"c{c}", f"h{pool}_{h}", f"w{pool}_{w}")
    row = int(np.prod(layout.item_shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    attrs = {"kind": "feature", "t": key.t, "block": key.block, "pool": key.pool, "module": module, "layout": layout.to_attrs()}
    return (n, *layout.item_shape), dtype, chunk_items(unit, row), unit, dims, attrs
