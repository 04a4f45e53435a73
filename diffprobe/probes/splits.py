"""Seeded stratified row selections: hold-out, k-fold, label fractions and subset lists.

Pure numpy functions of (labels, seed); the same inputs always give the same rows, in sorted order.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

import numpy as np

from diffprobe.probes.errors import LabelError, ProbeError

if TYPE_CHECKING:
    from diffprobe.probes.data import StoredColumn

log = logging.getLogger(__name__)


def _per_class(y: np.ndarray, seed: int) -> list[np.ndarray]:
    """Row indices of each class, each shuffled by a generator seeded with ``seed``."""
    rng = np.random.default_rng(seed)
    return [rng.permutation(np.flatnonzero(y == c)) for c in np.unique(y)]


def stratified_holdout(y: np.ndarray, fraction: float, seed: int = 0, group: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Split rows into (fit, held-out) keeping class proportions.

    Each class with at least 2 rows puts ``round(fraction · n_c)`` rows (at least 1, at most n_c − 1)
    into the held-out part. With ``group`` > 1, every ``group`` consecutive rows are one item (its
    views and noise draws, one label) and are split as one: no item is both fitted and held out.
    Returns two sorted index arrays.
    """
    if not 0.0 < fraction < 1.0:
        raise ProbeError(f"expected a hold-out fraction in (0, 1), got {fraction}")
    y = np.asarray(y)
    if group > 1:
        if y.size % group or not (y.reshape(-1, group) == y[::group, None]).all():
            raise ProbeError(f"expected {y.size} rows to be whole items of {group} rows with one label each")
        fit_items, held_items = stratified_holdout(y[::group], fraction, seed)
        expand = np.arange(group)
        return (fit_items[:, None] * group + expand).ravel(), (held_items[:, None] * group + expand).ravel()
    fit, held = [], []
    for rows in _per_class(y, seed):
        k = 0 if rows.size < 2 else min(max(1, round(fraction * rows.size)), rows.size - 1)
        held.append(rows[:k])
        fit.append(rows[k:])
    return np.sort(np.concatenate(fit)), np.sort(np.concatenate(held))


def stratified_kfold(y: np.ndarray, folds: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """``folds`` (train, test) index pairs; every row is in exactly one test part."""
    if folds < 2:
        raise ProbeError(f"expected at least 2 folds, got {folds}")
    assign = np.empty(len(y), dtype=np.int64)
    offset = 0
    for rows in _per_class(np.asarray(y), seed):
        # Deal each class round-robin, continuing where the previous class stopped so folds stay even.
        assign[rows] = (np.arange(rows.size) + offset) % folds
        offset += rows.size
    out = []
    for f in range(folds):
        test = np.flatnonzero(assign == f)
        if test.size == 0:
            raise LabelError(f"expected at least {folds} labelled items for {folds}-fold evaluation, got {len(y)}")
        out.append((np.flatnonzero(assign != f), test))
    return out


def stratified_fraction(y: np.ndarray, fraction: float, seed: int = 0) -> np.ndarray:
    """Sorted rows of a stratified ``fraction`` of the labelled items (at least one per class)."""
    if not 0.0 < fraction <= 1.0:
        raise ProbeError(f"expected a train fraction in (0, 1], got {fraction}")
    keep = [rows[: max(1, round(fraction * rows.size))] for rows in _per_class(np.asarray(y), seed)]
    return np.sort(np.concatenate(keep))


def read_subset_file(path: str | Path) -> list[str]:
    """Entries of a subset list: one item id or path per line (blank lines and ``#`` comments skipped).

    A line may carry extra whitespace-separated columns (such as a label); only the first is used.
    """
    p = Path(path)
    if not p.is_file():
        raise ProbeError(f"expected a subset list file, got {str(path)!r} which does not exist")
    entries = []
    for line in p.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            entries.append(line.split()[0])
    if not entries:
        raise ProbeError(f"subset list {str(path)!r} is empty")
    return entries


def match_subset(entries: Sequence[str], ids: np.ndarray | StoredColumn, paths: np.ndarray | StoredColumn | None = None) -> np.ndarray:
    """Sorted rows whose id, path or file name equals one of ``entries``.

    Matching tries, in order, the item id (e.g. ``3_dress/t10k_00013.png``), the source path, the
    bare file name (the form of the ImageNet 1%/10% lists, e.g. ``n01440764_10026.JPEG``) and the
    file name without its extension (a tar shard's key, ``n01440764_10026``, against that list).
    """
    wanted = set(entries)
    names = np.array([PurePosixPath(str(i).replace("\\", "/")).name for i in np.asarray(ids, dtype=str)])
    stem_of = {PurePosixPath(e.replace("\\", "/")).name.split(".")[0]: e for e in entries}
    columns: list[tuple[np.ndarray, dict[str, str] | None]] = [(np.asarray(ids, dtype=str), None)]
    if paths is not None:
        columns.append((np.asarray(paths, dtype=str), None))
    columns += [(names, None), (np.array([n.split(".")[0] for n in names]), stem_of)]
    hit = np.zeros(len(ids), dtype=bool)
    found: set[str] = set()
    for col, via in columns:
        keys = wanted if via is None else via
        m = np.fromiter((c in keys for c in col), dtype=bool, count=len(col))
        hit |= m
        found.update(col[m].tolist() if via is None else (via[c] for c in col[m]))
    if not hit.any():
        example = ", ".join(map(str, list(entries)[:3]))
        raise ProbeError(
            f"expected subset entries to match item ids, paths or file names of the train split, "
            f"got no match (list starts: {example}; ids look like {str(ids[0]) if len(ids) else '—'})"
        )
    missing = len(wanted - found)
    if missing:
        log.warning("%d of %d subset entries match no item of the train split", missing, len(wanted))
    return np.flatnonzero(hit)
