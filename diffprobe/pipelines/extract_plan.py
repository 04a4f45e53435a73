"""Planning an extraction: resolve the config, check or create the store, and list pending units.

Only the coordinator runs this: it creates every array and all metadata before any unit runs, so
workers only ever write whole shards of existing arrays and their done markers.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from diffprobe.errors import ConfigError, StoreError
from diffprobe.extract.adm_config import ADMConfig
from diffprobe.extract.blocks import BlockInfo, measure_blocks, resolve_blocks
from diffprobe.extract.checkpoint import file_sha256
from diffprobe.extract.config import ExtractConfig
from diffprobe.extract.data import DataSpec, discover
from diffprobe.extract.registry import resolve_config
from diffprobe.extract.run import default_forward_batch, default_fuse, resolve_precision
from diffprobe.store.backend import format_for_path
from diffprobe.store.layout import ITEM_ARRAYS, FeatureKey, auto_unit_size, chunk_items, config_hash, pool_label
from diffprobe.store.progress import UnitTask
from diffprobe.store.store import FeatureStore, create_store, open_store

log = logging.getLogger(__name__)

#: Config fields that never change stored values (they may differ between runs on one store).
RUNTIME_FIELDS = ("out", "batch_size", "device", "loader_workers", "unit_size", "strict", "overwrite", "splits")
#: Fields whose values may grow between runs: new ones only add arrays.
KEY_FIELDS = ("timesteps", "blocks", "pools")
#: Identity fields added after stores were first written, with the value older stores imply.
IDENTITY_DEFAULTS: dict[str, Any] = {"fuse_timesteps": 1}


@dataclass
class ExtractPlan:
    """A resolved extraction: model, blocks, keys, data and the store's identity."""

    config: ExtractConfig
    adm: ADMConfig
    blocks: dict[int, BlockInfo]
    keys: list[FeatureKey]
    data: DataSpec
    precision: str
    forward_batch: int
    fuse: int
    identity: dict[str, Any]
    checkpoint_sha256: str | None
    shapes: dict[FeatureKey, tuple[int, ...]] = field(default_factory=dict)

    @property
    def hash(self) -> str:
        return config_hash(self.identity)

    def item_bytes(self) -> int:
        size = 2 if self.config.dtype == "float16" else 4
        return sum(size * _prod(s) for s in self.shapes.values())

    def estimated_bytes(self) -> int:
        """Uncompressed size of every feature array of this run."""
        return sum(len(items) for items in self.data.splits.values()) * self.item_bytes()

    def summary(self) -> dict[str, Any]:
        return {
            "store": self.config.out,
            "format": format_for_path(self.config.out),
            "config_hash": self.hash,
            "model": self.config.model,
            "blocks": [f"{n} ({b.path}, {b.channels}×{b.height}×{b.width})" for n, b in self.blocks.items()],
            "precision": self.precision,
            "forward_batch": self.forward_batch,
            "fuse_timesteps": self.fuse,
            "splits": {s: len(v) for s, v in self.data.splits.items()},
            "classes": len(self.data.class_names),
            "arrays": [f"{k} {list(self.shapes[k])}" for k in self.keys],
            "estimated_bytes": self.estimated_bytes(),
        }


def _prod(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def stored_identity(config: ExtractConfig) -> dict[str, Any] | None:
    """The identity recorded in the existing store at ``config.out`` (None: no usable store, or --overwrite)."""
    out = Path(config.out).expanduser()
    if config.overwrite or not out.exists():
        return None
    try:
        with open_store(out) as store:
            return {**IDENTITY_DEFAULTS, **store.attrs.get("identity", {})}
    except StoreError:
        return None  # prepare_store reports it


@dataclass(frozen=True)
class ComputeSettings:
    """The resolved value-defining compute settings (all recorded in the store's identity)."""

    precision: str
    forward_batch: int
    fuse: int


def resolve_compute(config: ExtractConfig, device: torch.device, image_size: int, stored: dict[str, Any] | None) -> ComputeSettings:
    """Precision, forward batch and timestep fusion for ``config`` on ``device``.

    A setting given explicitly is used as given (a mismatch with an existing store is then refused
    by :func:`prepare_store`). A setting left at auto takes the existing store's value, so resuming
    or extending a store just works — also on another kind of device; otherwise its default for the
    device.
    """
    stored = stored or {}

    def pick(name: str, given: Any, default: Any) -> Any:
        if given is not None:
            return given
        if name in stored:
            if stored[name] != default:
                log.info("%s=%s taken from the existing store (this device's default is %s)", name, stored[name], default)
            return stored[name]
        return default

    precision = pick(
        "precision",
        None if config.precision == "auto" else resolve_precision(config.precision, device),
        resolve_precision("auto", device),
    )
    forward_batch = pick("forward_batch", config.forward_batch, default_forward_batch(device))
    passes = len(config.timesteps) * config.draws
    fuse = pick("fuse_timesteps", config.fuse_timesteps, default_fuse(passes, forward_batch, image_size, device))
    return ComputeSettings(precision, forward_batch, fuse)


def make_plan(config: ExtractConfig, device: torch.device) -> ExtractPlan:
    """Resolve ``config`` for ``device`` (no model weights are loaded; blocks are measured on the meta device)."""
    _, adm = resolve_config(config.model, config.flag_dict)
    infos = list(measure_blocks(adm))
    numbers = resolve_blocks(config.blocks, infos)
    blocks = {n: infos[n - 1] for n in numbers}
    for t in config.timesteps:
        if t >= adm.diffusion_steps:
            raise ConfigError(f"timestep {t} is out of range: this model has t in [0, {adm.diffusion_steps - 1}]")
    for n, b in blocks.items():
        for p in config.pools:
            if p is not None and p > min(b.height, b.width):
                raise ConfigError(
                    f"pool {p} is larger than block {n}'s {b.height}×{b.width} map; use a pool ≤ "
                    f"{min(b.height, b.width)} or 'full'"
                )
    compute = resolve_compute(config, device, adm.image_size, stored_identity(config))
    keys = [FeatureKey(t, n, p) for t in config.timesteps for n in numbers for p in config.pools]
    sha = file_sha256(config.checkpoint) if config.checkpoint else None
    data = discover(config.data, config.splits)
    identity = {
        "model": config.model,
        "adm_flags": adm.to_flags(),
        "checkpoint_sha256": sha,
        "class_label": config.class_label,
        "seed": config.seed,
        "draws": config.draws,
        "reduce": config.reduce,
        "dtype": config.dtype,
        "precision": compute.precision,
        "forward_batch": compute.forward_batch,
        "fuse_timesteps": compute.fuse,
        "compile": config.compile,
        "class_names": data.class_names,
        "data": {s: data.fingerprint(s) for s in sorted(data.splits)},
    }
    draws = (config.draws,) if config.reduce == "none" and config.draws > 1 else ()
    shapes = {}
    for k in keys:
        b = blocks[k.block]
        side = (b.height, b.width) if k.pool is None else (k.pool, k.pool)
        shapes[k] = (*draws, b.channels, *side)
    return ExtractPlan(config, adm, blocks, keys, data, compute.precision, compute.forward_batch, compute.fuse, identity, sha, shapes)


def identity_diff(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    old = {**IDENTITY_DEFAULTS, **old}
    diffs = []
    for k in sorted(set(old) | set(new)):
        if k == "data":
            for s in sorted(set(old.get("data", {})) & set(new.get("data", {}))):
                if old["data"][s] != new["data"][s]:
                    diffs.append(f"data (split {s!r}: other images or labels)")
        elif old.get(k) != new.get(k):
            diffs.append(f"{k}: store has {old.get(k)!r}, this run {new.get(k)!r}")
    return diffs


def _merged_config(stored: dict[str, Any], config: ExtractConfig) -> dict[str, Any]:
    """The recorded config: this run's fields, with key fields grown to everything in the store."""
    new = config.to_dict()
    for f in KEY_FIELDS:
        new[f] = list(dict.fromkeys([*stored.get(f, []), *new[f]]))
    return new


@contextlib.contextmanager
def store_lock(out: Path) -> Iterator[None]:
    """An exclusive lock beside the store, so concurrent coordinators (``--shard`` processes)
    create it once and never interleave metadata updates."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.parent / f".{out.name}.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def prepare_store(plan: ExtractPlan) -> FeatureStore:
    """Create or open the store, refuse a different identity, and create missing splits and arrays."""
    out = Path(plan.config.out).expanduser()
    if plan.config.overwrite and plan.config.shard is not None:
        raise ConfigError("--overwrite cannot be combined with --shard (each shard would replace the others' work)")
    if format_for_path(out) == "hdf5" and (plan.config.shard or plan.config.workers or plan.config.scheduler):
        raise ConfigError("HDF5 stores take one writer: use a Zarr directory for --workers, --scheduler or --shard")
    with store_lock(out):
        return _prepare_store(plan, out)


def _prepare_store(plan: ExtractPlan, out: Path) -> FeatureStore:
    cfg = plan.config
    exists = out.exists()
    if exists and not cfg.overwrite:
        try:
            store = open_store(out, mode="a")
        except StoreError as e:
            raise StoreError(f"{out} exists but is not a usable diffprobe store ({e}); pass --overwrite to replace it") from None
        old = store.attrs.get("identity", {})
        diffs = identity_diff(old, plan.identity)
        if diffs:
            store.close()
            raise StoreError(
                f"store {out} was made with another configuration:\n  " + "\n  ".join(diffs)
                + "\nuse another --out, or --overwrite to replace the store"
            )
        recorded = _merged_config(store.config, cfg)
        plan.identity = {**plan.identity, "data": {**old.get("data", {}), **plan.identity["data"]}}
    else:
        if exists:
            log.warning("replacing existing store %s (--overwrite)", out)
        store = create_store(out, {})
        recorded = _merged_config({}, cfg)
    store.backend.update_root_attrs(
        {
            "config": recorded,
            "identity": plan.identity,
            "config_hash": plan.hash,
            "checkpoint_sha256": plan.checkpoint_sha256,
            "class_names": plan.data.class_names,
        }
    )
    for split, items in plan.data.splits.items():
        if split not in store.splits:
            _create_split(store, plan, split, items)
        unit = store.unit_size(split)
        for k in plan.keys:
            if str(k) not in store.keys(split):
                shape = plan.shapes[k]
                dims = ("item", *(["draw"] if len(shape) == 4 else []), f"c{shape[-3]}", f"h{pool_label(k.pool)}_{shape[-2]}", f"w{pool_label(k.pool)}_{shape[-1]}")
                row = _prod(shape) * (2 if cfg.dtype == "float16" else 4)
                attrs = {"kind": "feature", "t": k.t, "block": k.block, "pool": k.pool, "module": plan.blocks[k.block].path}
                store.backend.create_array(split, str(k), (len(items), *shape), cfg.dtype, chunk_items(unit, row), unit, tuple(dims), attrs)
    store.backend.consolidate()
    store.backend.flush()
    return store


def _create_split(store: FeatureStore, plan: ExtractPlan, split: str, items: list) -> None:
    n = len(items)
    unit = plan.config.unit_size or auto_unit_size(max(plan.item_bytes(), 1), n)
    store.backend.create_group(split, {"n_items": n, "unit_size": unit})
    b = store.backend
    b.create_array(split, "item_id", (n,), "str", unit, unit, ("item",), {"kind": "items"})
    b.create_array(split, "path", (n,), "str", unit, unit, ("item",), {"kind": "items"})
    b.create_array(split, "label", (n,), "int64", unit, unit, ("item",), {"kind": "items"})
    b.create_array(split, "valid", (n,), "bool", unit, unit, ("item",), {"kind": "items"})
    if n:
        import numpy as np

        b.write_rows(split, "item_id", 0, np.array([it.id for it in items], dtype=object))
        b.write_rows(split, "path", 0, np.array([it.path for it in items], dtype=object))
        b.write_rows(split, "label", 0, np.array([it.label for it in items], dtype=np.int64))
    assert set(b.arrays(split)) >= set(ITEM_ARRAYS)


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
            done = tuple(markers.get(u, {}).get("keys", ()))
            todo = tuple(k for k in plan.keys if str(k) not in done)
            if todo and mine:
                tasks.append(UnitTask(split, u, start, stop, todo, done))
    return tasks


