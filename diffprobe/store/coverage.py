"""Which items of a split a reader may use: those of the units that are done for every array it reads.

Every reader of stores — probes (``load_features``), dense probes (``DenseSource``), sweeps (through
both), CKA, DifFeed's cached first pass and ``probe predict`` — calls :func:`require_complete` (or
:func:`coverage`) once per split with the arrays :func:`~diffprobe.store.select.resolve_selection`
gave it. A unit counts as done for an array when its done marker (written last, after the unit's
rows) lists the array; imported arrays, written whole, are always done. So a split that a run left
half-written (killed, or still writing) is never scored as if it were whole:

- by default it is an error (:class:`~diffprobe.errors.StoreIncompleteError`) that says how many
  units and items are missing and how to finish them;
- with ``allow_incomplete`` the reader reads only the items of the done units, and its output
  records ``complete: false`` with the item counts (:meth:`Coverage.record`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from diffprobe.errors import StoreIncompleteError
from diffprobe.store.layout import FeatureKey
from diffprobe.store.reader import StoreReader


@dataclass(frozen=True)
class Coverage:
    """The done part of one split for the arrays a reader reads.

    Attributes:
        rows: (n,) sorted item indices of the units done for every array in ``arrays``.
        units_done, units: done units and all units of the split (both 0 for stores without units).
    """

    path: str
    split: str
    arrays: tuple[str, ...]
    n_items: int
    units: int
    units_done: int
    rows: np.ndarray

    @property
    def complete(self) -> bool:
        return len(self.rows) == self.n_items

    @property
    def missing_items(self) -> int:
        return self.n_items - len(self.rows)

    def record(self) -> dict[str, Any]:
        """What an output records about the split it read: ``{"complete", "items", "items_read"}``."""
        return {"complete": self.complete, "items": self.n_items, "items_read": int(len(self.rows))}


def coverage(store: StoreReader, split: str, arrays: Sequence[str]) -> Coverage:
    """The items of ``split`` in units done for every one of ``arrays`` (all items for stores
    without done markers, such as in-memory ones)."""
    markers = getattr(store, "markers", None)
    extracted = [a for a in arrays if FeatureKey.is_key(a)]
    if markers is None or not hasattr(store, "units") or not extracted:  # nothing written unit by unit is read
        n = len(store.valid(split))
        return Coverage(str(store.path), split, tuple(arrays), n, 0, 0, np.arange(n))
    n = int(store.n_items(split))  # type: ignore[attr-defined]
    units = store.units(split)  # type: ignore[attr-defined]
    marks = markers(split)
    done = [u for u in range(len(units)) if u in marks and all(a in marks[u].get("keys", ()) for a in extracted)]
    rows = np.concatenate([np.arange(*units[u]) for u in done]) if done else np.zeros(0, dtype=np.int64)
    return Coverage(str(store.path), split, tuple(arrays), n, len(units), len(done), rows.astype(np.int64))


def require_complete(store: StoreReader, split: str, arrays: Sequence[str], *, allow_incomplete: bool = False) -> Coverage:
    """:func:`coverage`, checked: every unit done, or (``allow_incomplete``) at least one.

    Raises:
        StoreIncompleteError: units are missing and ``allow_incomplete`` is False; or no unit is
            done at all. The message counts them and says how to finish the store.
    """
    cov = coverage(store, split, arrays)
    if cov.complete:
        return cov
    arrays_text = ", ".join(cov.arrays[:4]) + (" …" if len(cov.arrays) > 4 else "")
    what = (f"split {split!r} of {cov.path} is not fully extracted: {cov.units - cov.units_done} of {cov.units} units "
            f"({cov.missing_items} of {cov.n_items} items) are not done for {arrays_text} — a run was stopped, or is still writing")  # fmt: skip
    finish = (f"Finish it by re-running the same `diffprobe extract` command (`diffprobe store info {cov.path}` shows "
              "what is done)")  # fmt: skip
    if not len(cov.rows):
        raise StoreIncompleteError(f"{what}. No item of it is finished yet, so there is nothing to read. {finish}")
    if not allow_incomplete:
        raise StoreIncompleteError(f"{what}. {finish}; or pass --allow-incomplete to use only its {len(cov.rows)} finished "
                                   "items (the results then record complete: false)")  # fmt: skip
    return cov
