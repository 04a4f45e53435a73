"""Repairing a store: find the damaged units (``store verify --deep``) and compute exactly those again.

The store records the configuration that made it, so the repair reruns that extraction after
marking the damaged units not done; every other unit is left as it is. Computation is deterministic,
so the repaired rows are the bytes the undamaged store held.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from diffprobe.errors import DataError, DiffprobeError, StoreError
from diffprobe.extract.config import ExtractConfig
from diffprobe.extract.masks import split_masks
from diffprobe.extract.sources.discover import discover
from diffprobe.extract.sources.item_table import ItemTable
from diffprobe.pipelines.extraction.location import ATTR, locate_data
from diffprobe.pipelines.extraction.plan import ExtractPlan, index_path
from diffprobe.pipelines.extraction.prepare import identity_diff, refused
from diffprobe.pipelines.extraction.safety import writer_lock
from diffprobe.pipelines.extraction.summary import ExtractSummary
from diffprobe.store.arrays import ArrayLayout
from diffprobe.store.integrity import TABLE_ARRAYS, DeepReport, deep_verify
from diffprobe.store.layout import SIDE_ARRAYS, VIEW_PARAMS_ARRAY
from diffprobe.store.mend import Mended, mend_metadata
from diffprobe.store.store import FeatureStore, open_store

log = logging.getLogger(__name__)

#: Recorded settings a repair never reuses: it runs here, in one process, on the damaged splits.
_RUN_HERE = {"overwrite": False, "splits": (), "shard": None, "workers": 0, "scheduler": None}


@dataclass
class RepairReport:
    """What the repair found, recomputed, and what the deep check says afterwards."""

    found: DeepReport
    mended: Mended = field(default_factory=Mended)
    units: dict[str, list[int]] = field(default_factory=dict)
    rewrote_item_table: list[str] = field(default_factory=list)
    rewrote_side: list[str] = field(default_factory=list)  # "split/array" of masks and view parameters
    extraction: ExtractSummary | None = None
    after: DeepReport | None = None

    @property
    def ok(self) -> bool:
        """Nothing is left damaged (NaN/Inf as computed is not damage)."""
        if self.mended.cannot or self.found.metadata:
            return False
        return not self.found.damage if self.after is None else not self.after.damage

    def lines(self) -> list[str]:
        out = [f"rebuilt the metadata of {m}" for m in self.mended.rebuilt]
        out += [f"cannot repair: {c}" for c in self.mended.cannot]
        out += [d.line() for d in self.found.damage]
        if self.mended.cannot or self.found.metadata:
            out += [f.line() for f in self.found.metadata if f.line() not in self.mended.cannot]
            return [*out, "the store is still damaged: what is listed above cannot be rebuilt from the store's own records"]
        if not self.found.damage:
            done = "repaired: the metadata is rebuilt; " if self.mended.rebuilt else "nothing to repair: "
            return [*out, f"{done}every chunk reads and every digest matches"]
        out += [f"recomputed {split}: {len(units)} unit(s) ({', '.join(map(str, units[:20]))})" for split, units in self.units.items()]
        out += [f"rewrote the item table of {split}" for split in self.rewrote_item_table]
        out += [f"rewrote {name}" for name in self.rewrote_side]
        if self.after is not None:
            out += [d.line() for d in self.after.damage]
            out.append("repaired: every chunk reads and every digest matches" if self.ok else "the store is still damaged (see above)")
        return out


def recorded_config(path: Path, overrides: dict[str, Any]) -> ExtractConfig:
    """The extraction that made the store at ``path``, to run here on all of it (``overrides`` win)."""
    with open_store(path) as s:
        cfg = dict(s.config)
        location = s.attrs.get(ATTR)
    if not cfg:
        raise StoreError(f"{path} records no extraction configuration; it cannot be repaired by recomputing")
    known = {f.name for f in fields(ExtractConfig)}
    cfg = {k: v for k, v in cfg.items() if k in known}
    cfg["flags"] = tuple(sorted(dict(cfg.get("flags") or {}).items()))
    for k in ("timesteps", "blocks", "pools"):
        cfg[k] = tuple(cfg.get(k) or ())
    cfg.update({**_RUN_HERE, "out": str(path)}, **{k: v for k, v in overrides.items() if v is not None})
    if overrides.get("data") is None and cfg.get("data"):
        cfg["data"] = locate_data(str(cfg["data"]), path, location)
    return ExtractConfig(**cfg)


def repair_store(path: str | Path, *, progress: bool | None = None, **overrides: Any) -> RepairReport:
    """Deep-verify the store at ``path``, recompute its damaged units, and verify again.

    Args:
        overrides: ExtractConfig fields to change from the recorded ones (``data``, ``checkpoint``,
            ``device`` … when the data or checkpoint moved since).
    Raises:
        StoreError: damage that recomputing cannot mend (an imported array: import it again).
    """
    p = Path(path).expanduser()
    with writer_lock(p):  # no extraction may write while units are found, unmarked and recomputed
        return _repair(p, overrides, progress)


def _repair(p: Path, overrides: dict[str, Any], progress: bool | None) -> RepairReport:
    from diffprobe.device import resolve_device
    from diffprobe.pipelines.extraction.job import run_plan
    from diffprobe.pipelines.extraction.plan import make_plan

    with open_store(p, mode="a") as s:
        mended = mend_metadata(s, _planned_layouts(p, overrides))
    with open_store(p) as s:
        found = deep_verify(s)
        stored = {split: set(s.keys(split)) for split in s.splits if split not in {f.split for f in found.metadata if f.whole_split}}
        identity = dict(s.attrs.get("identity", {}))
    rep = RepairReport(found, mended)
    if not found.damage or mended.cannot or found.metadata:
        return rep
    rewritten = (*TABLE_ARRAYS, *SIDE_ARRAYS)  # made again from the data and the seed
    imported = sorted({f"{d.split}/{d.array}" for d in found.damage if d.unit < 0 and d.array not in rewritten})
    if imported:
        raise StoreError(f"damaged imported array(s) {', '.join(imported)}: import them again with `diffprobe store import --overwrite`")
    config = recorded_config(p, overrides)
    device = resolve_device(config.device)
    plans = {}
    for split in sorted({d.split for d in found.damage}):  # checked before anything is changed
        try:
            plan = make_plan(replace(config, splits=(split,)), device)
        except DataError as e:
            raise DataError(f"cannot repair {p}: its images are needed to recompute the damaged units, and {e}\n"
                            "pass --data with where the images are now") from None  # fmt: skip
        diffs = identity_diff(identity, plan.identity)
        if diffs:
            raise StoreError(f"cannot repair {p} with this configuration: the store {refused(diffs)}\n"
                             "pass --data/--checkpoint pointing to what made it")  # fmt: skip
        plans[split] = replace(plan, keys=tuple(k for k in plan.keys if str(k) in stored[split]))
    with open_store(p, mode="a") as s:
        for split in sorted({d.split for d in found.damage if d.unit < 0 and d.array in TABLE_ARRAYS}):
            _rewrite_item_table(s, split, config)
            rep.rewrote_item_table.append(split)
        for d in sorted({(d.split, d.array) for d in found.damage if d.array in SIDE_ARRAYS}):
            _rewrite_side(s, *d, plans[d[0]])
            rep.rewrote_side.append(f"{d[0]}/{d[1]}")
        for split, units in found.units().items():
            units.discard(-1)
            for u in sorted(units):
                s.backend.delete_marker(split, u)
            rep.units[split] = sorted(units)
        s.backend.flush()
    log.info("repairing %s: recomputing %s", p, ", ".join(f"{k}: {len(v)} unit(s)" for k, v in rep.units.items()))
    for split, plan in plans.items():
        rep.extraction = run_plan(plan, device, progress, lock=False)
    with open_store(p) as s:
        rep.after = deep_verify(s)
    return rep


def _planned_layouts(p: Path, overrides: dict[str, Any]) -> Callable[[str, str], ArrayLayout | None]:
    """The layout the recorded extraction plans for an array (planned once, when first asked: it
    needs the data and the checkpoint); None when it cannot be planned."""
    plans: dict[str, dict[str, ArrayLayout]] = {}

    def layout(split: str, name: str) -> ArrayLayout | None:
        from diffprobe.device import resolve_device
        from diffprobe.pipelines.extraction.plan import make_plan

        if split not in plans:
            try:
                config = recorded_config(p, overrides)
                plan = make_plan(replace(config, splits=(split,)), resolve_device(config.device), cache_index=False)
                plans[split] = {str(k): lay for k, lay in plan.layouts.items()}
            except DiffprobeError as e:
                log.warning("cannot plan the recorded extraction to rebuild %s/%s: %s", split, name, e)
                plans[split] = {}
        return plans[split].get(name)

    return layout


def _rewrite_side(store: FeatureStore, split: str, name: str, plan: ExtractPlan) -> None:
    """Write a split's masks or view parameters again: view parameters from the seed, masks from the data."""
    items = plan.data.splits[split]
    if name == VIEW_PARAMS_ARRAY:
        store.rewrite_side(split, name, np.stack([plan.views.params(it.id) for it in items]))
    else:
        store.rewrite_side(split, name, split_masks(items, plan.model.image_size, plan.views))


def _rewrite_item_table(store: FeatureStore, split: str, config: ExtractConfig) -> None:
    """Write a split's item table again from the data, which must be the data the store was made from."""
    spec = discover(config.data, (split,), config.data_options, index_path(config.out))
    if spec.fingerprint(split) != store.attrs.get("identity", {}).get("data", {}).get(split):
        raise StoreError(f"the item table of split {split!r} is damaged and {config.data} is not the data it was made from; "
                         "pass --data with the original images")  # fmt: skip
    items = ItemTable.of(spec.splits[split])
    store.write_item_table(split, items.ids, items.paths, items.labels)
