"""Preparing a store for a plan: refuse another identity, create what is missing, list pending units.

Only the coordinator runs this: it creates every array and all metadata (through
:class:`~diffprobe.store.store.FeatureStore`) before any unit runs, so workers only ever write whole
shards of existing arrays and their done markers.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from diffprobe.errors import ConfigError, StoreError
from diffprobe.extract.config import ExtractConfig
from diffprobe.extract.masks import split_masks
from diffprobe.extract.sources.item_table import ItemTable
from diffprobe.pipelines.extraction.location import ATTR, record_location
from diffprobe.pipelines.extraction.locks import file_lock
from diffprobe.pipelines.extraction.plan import IDENTITY_DEFAULTS, ExtractPlan
from diffprobe.pipelines.extraction.temporaries import CREATING_PREFIX, remove_stale_temporaries
from diffprobe.sizes import format_bytes
from diffprobe.store.backend import Backend, backend_for_path
from diffprobe.store.layout import ITEM_ARRAYS, MAX_FILES, MAX_SHARD_BYTES, FeatureKey, auto_unit_size, few_files_unit_size
from diffprobe.store.ownership import check_replaceable, is_empty_dir, remove_store
from diffprobe.store.progress import UnitTask
from diffprobe.store.store import FeatureStore, create_store, open_store

log = logging.getLogger(__name__)

#: Fields whose values may grow between runs: new ones only add arrays.
KEY_FIELDS = ("timesteps", "blocks", "pools")


def identity_diff(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What differs between a store's identity and a run's, one line per field."""
    old, new = {**IDENTITY_DEFAULTS, **old}, {**IDENTITY_DEFAULTS, **new}
    diffs = []
    for k in sorted(set(old) | set(new)):
        if k == "data":
            for s in sorted(set(old.get("data", {})) & set(new.get("data", {}))):
                if old["data"][s] != new["data"][s]:
                    diffs.append(f"data (split {s!r}: other images or labels)")
        elif old.get(k) != new.get(k):
            diffs.append(f"{k}: store has {old.get(k)!r}, this run {new.get(k)!r}")
    return diffs


def refused(diffs: list[str]) -> str:
    """The refusal of a run whose identity differs from the store's."""
    return "was made with another configuration:\n  " + "\n  ".join(diffs)


def _merged_config(stored: dict[str, Any], config: ExtractConfig) -> dict[str, Any]:
    """The recorded config: this run's fields, with key fields grown to everything in the store."""
    new = config.to_dict()
    for f in KEY_FIELDS:
        new[f] = list(dict.fromkeys([*stored.get(f, []), *new[f]]))
    return new


#: On a CPU, a work unit is about this many seconds of work: Ctrl-C or a killed run loses at most that.
UNIT_SECONDS = 30.0


def unit_size_for(plan: ExtractPlan, n_items: int, warn: bool = False) -> int:
    """Items per work unit of a new split, a power of two: as configured, else the largest that fits the
    unit memory budget (:func:`auto_unit_size`) — on a CPU no more than about :data:`UNIT_SECONDS` of
    work (an interrupt keeps every finished unit) — grown where the store (every split of the plan)
    would otherwise hold more than :data:`~diffprobe.store.layout.MAX_FILES` shard files
    (:func:`few_files_unit_size`)."""
    if plan.config.unit_size:
        return plan.config.unit_size
    size = auto_unit_size(max(plan.item_bytes(), 1), n_items)
    if plan.device_type == "cpu":
        per_unit = max(16.0, UNIT_SECONDS / max(plan.seconds_per_item(), 1e-9))
        size = min(size, 1 << int(math.log2(per_unit)))
    total = sum(len(items) for items in plan.data.splits.values())
    size = few_files_unit_size(size, plan.item_bytes(), max(plan.array_bytes(), default=0), n_items, len(plan.keys) + len(ITEM_ARRAYS), total)
    files = math.ceil(n_items / size) * (len(plan.keys) + len(ITEM_ARRAYS))
    if warn and files > MAX_FILES * n_items / max(total, n_items):
        log.warning("this split of %d items × %d keys will hold %d shard files, more than its share of %d per store (units "
                    "of %d items, whose shards reach %s): fewer keys per run, or a filesystem that handles many files, or "
                    "--unit-size",
                    n_items, len(plan.keys), files, MAX_FILES, size, format_bytes(MAX_SHARD_BYTES))  # fmt: skip
    return size


@contextlib.contextmanager
def store_lock(out: Path) -> Iterator[None]:
    """An exclusive lock beside the store, so concurrent coordinators (``--shard`` processes)
    create it once and never interleave metadata updates (the file is gone once released)."""
    with file_lock(out.parent / f".{out.name}.lock", f"the creation lock of {out}"):
        yield


def check_writers(plan: ExtractPlan) -> type[Backend]:
    """The backend of the plan's store, after checking that it takes the writers the plan starts.

    Raises:
        ConfigError: several writers (``--workers``, ``--scheduler``, ``--shard``) for a backend that takes one.
    """
    backend = backend_for_path(plan.config.out)
    if not backend.concurrent_writers and (plan.config.shard or plan.config.workers or plan.config.scheduler):
        raise ConfigError(f"{backend.title} stores take one writer: use a Zarr directory for --workers, --scheduler or --shard")
    return backend


def prepare_store(plan: ExtractPlan) -> tuple[FeatureStore, ExtractPlan]:
    """Create or open the store, refuse a different identity, and create missing splits and arrays.

    Returns the open store and the plan with its identity as recorded (data fingerprints of splits
    already in the store are kept).
    """
    out = Path(plan.config.out).expanduser()
    if plan.config.overwrite and plan.config.shard is not None:
        raise ConfigError("--overwrite cannot be combined with --shard (each shard would replace the others' work)")
    check_writers(plan)
    with store_lock(out):
        return _prepare_store(plan, out)


def _prepare_store(plan: ExtractPlan, out: Path) -> tuple[FeatureStore, ExtractPlan]:
    """Open (or build) the store and write what is missing of its schema.

    A new store is built beside ``out`` and renamed into place once its whole schema is written, so
    a run killed while creating it never leaves a half-made store that refuses the next run.
    """
    cfg = plan.config
    building: Path | None = None
    remove_stale_temporaries(out, markers=cfg.shard is None)
    check_replaceable(out)  # --overwrite, or a rebuild, may replace only a store or an empty folder
    exists = out.exists() and not is_empty_dir(out)
    if exists and not cfg.overwrite:
        try:
            store = open_store(out, mode="a")
        except StoreError as e:
            raise StoreError(f"{out} is a diffprobe store that cannot be opened ({e}); `diffprobe store verify {out}` says "
                             "what is wrong, `diffprobe store repair` mends what it can; --overwrite replaces it") from None  # fmt: skip
        old = store.attrs.get("identity", {})
        diffs = identity_diff(old, plan.identity)
        never_ran = not any(store.markers(s) for s in store.splits)
        if diffs and not never_ran:
            store.close()
            raise StoreError(f"store {out} {refused(diffs)}\nuse another --out, or --overwrite to replace the store")
        if diffs:
            store.close()
            log.warning("replacing store %s: no unit of it ever finished, and it was made with another configuration (%s)",
                        out, "; ".join(diffs))  # fmt: skip
            building, store, recorded = _build(out, cfg)
        else:
            recorded = _merged_config(store.config, cfg)
            plan = replace(plan, identity={**plan.identity, "data": {**old.get("data", {}), **plan.identity["data"]}})
    else:
        if exists:
            log.warning("replacing existing store %s (--overwrite)", out)
        building, store, recorded = _build(out, cfg)
    try:
        _write_schema(store, plan, out, recorded)
    except BaseException:
        store.close()
        if building is not None:  # a half-built store is a temporary: it never outlives the run
            _discard(building)
        raise
    if building is not None:  # the whole schema is written: put the new store in place
        store.close()
        remove_store(out)
        os.replace(building, out)
        store = open_store(out, mode="a")
    return store, plan


def _write_schema(store: FeatureStore, plan: ExtractPlan, out: Path, recorded: dict[str, Any]) -> None:
    """Record the run in ``store`` and create every split, side array and feature array it lacks."""
    store.update_attrs(
        {
            "config": recorded,
            "identity": plan.identity,
            "config_hash": plan.hash,
            "checkpoint_sha256": plan.checkpoint_sha256,
            "class_names": plan.data.class_names,
            "block_table": [b.to_dict() for b in plan.model.blocks],
            **({ATTR: where} if (where := record_location(plan.config.data, out)) else {}),
            **({"mask_classes": plan.data.mask_classes} if plan.data.mask_classes else {}),
        }
    )
    for split, listed in plan.data.splits.items():
        items = ItemTable.of(listed)
        half_made = split in store.splits and not set(ITEM_ARRAYS) <= set(store.backend.arrays(split))
        if half_made and store.markers(split):
            raise StoreError(f"split {split!r} of {out} has done units but lacks its item table; pass --overwrite to rebuild it")
        if split not in store.splits or half_made:  # new, or its creation was cut short
            store.create_split(split, items.ids, items.paths, items.labels, unit_size_for(plan, len(items), warn=True))
        if plan.compute.views > 1 and not store.has_view_params(split):
            vs = plan.views
            store.write_view_params(split, vs.augment, vs.augmentation.fields, vs.size, vs.seed, np.stack([vs.params(it.id) for it in items]))
        if items.has_masks() and not store.has_masks(split):
            store.write_masks(split, split_masks(items, plan.model.image_size, plan.views))
        have = set(store.keys(split))
        for k in plan.keys:
            if str(k) not in have:
                store.create_feature_array(split, k, plan.layouts[k], plan.compute.out_dtype, plan.blocks[k.block].path)
    store.commit()


def _build(out: Path, cfg: ExtractConfig) -> tuple[Path, FeatureStore, dict[str, Any]]:
    """A new, empty store at a temporary name beside ``out`` (moved into place by the caller)."""
    building = out.with_name(f"{CREATING_PREFIX.format(name=out.name)}{os.getpid()}{out.suffix if out.suffix in ('.h5', '.hdf5') else ''}")
    _discard(building)
    try:
        return building, create_store(building, {}), _merged_config({}, cfg)
    except BaseException:
        _discard(building)
        raise


def _discard(path: Path) -> None:
    """Remove a temporary store this process was building (never anything else)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink(missing_ok=True)


def todo_keys(plan: ExtractPlan, marker: dict[str, Any]) -> tuple[FeatureKey, ...]:
    """The plan's keys that a unit's done marker does not list."""
    done = marker.get("keys", ())
    return tuple(k for k in plan.keys if str(k) not in done)


def pending_units(store: FeatureStore, plan: ExtractPlan, shard: tuple[int, int] | None = None) -> list[UnitTask]:
    """Units with at least one requested key not yet marked done.

    With ``shard=(i, n)``, only units whose global index (over all splits, in order) is ≡ i mod n:
    the assignment never depends on what is already done, so shards never overlap.
    """
    tasks = []
    g = 0
    for split in plan.data.splits:
        markers = store.markers(split)
        for u, (start, stop) in enumerate(store.units(split)):
            mine = shard is None or g % shard[1] == shard[0]
            g += 1
            marker = markers.get(u, {})
            todo = todo_keys(plan, marker)
            if todo and mine:
                tasks.append(UnitTask(split, u, start, stop, todo, tuple(marker.get("keys", ())), dict(marker.get("digests", {})),
                                      dict(marker.get("prints", {}))))  # fmt: skip
    return tasks
