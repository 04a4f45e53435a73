"""Planning an extraction: resolve the config for a device into a frozen :class:`ExtractPlan`.

Nothing is loaded or written here: blocks are measured on the meta device, the data is listed, and
an existing store is only read for its identity (so auto settings can follow it).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from diffprobe.blocks import BlockInfo, resolve_blocks
from diffprobe.errors import ConfigError, StoreError
from diffprobe.extract.compute_spec import ComputeSpec
from diffprobe.extract.config import ExtractConfig
from diffprobe.extract.registry import check_model, store_identity
from diffprobe.extract.sources.discover import discover
from diffprobe.extract.sources.item import DataSpec
from diffprobe.extract.spec import ModelSpec
from diffprobe.extract.views import ViewSpec
from diffprobe.store.arrays import ArrayLayout
from diffprobe.store.backend import format_for_path
from diffprobe.store.layout import FeatureKey, config_hash
from diffprobe.store.store import open_store

#: Floating-point operations per second of a CPU that :meth:`ExtractPlan.seconds_per_item` assumes:
#: about what the bundled 32×32 model measured on 2 cores (1,000 images through 19 blocks in 84 s).
#: A fixed figure, not this machine's thread count, so every process of a run sizes units alike.
CPU_FLOPS = 30e9
#: Identity fields added after stores were first written, with the value older stores imply.
IDENTITY_DEFAULTS: dict[str, Any] = {"fuse_timesteps": 1, "views": 1, "augment": "none", "channels_last": False, "norm_kernel": "torch"}


@dataclass(frozen=True)
class ExtractPlan:
    """A resolved extraction: model, blocks, keys, data, compute spec and the store's identity.

    ``model`` describes the backbone (its family, block table, input size); ``checkpoint`` is the
    weights file or directory the run loads (a preset's bundled one when none was given; None:
    random weights).

    ``layouts`` gives each key's per-item :class:`~diffprobe.store.arrays.ArrayLayout` — (C, p, p),
    led by a (V,) view axis when V > 1 views are made and then a (K,) draw axis when K > 1 draws are
    kept — computed here once and recorded with each array; ``shapes`` are their stored item shapes.
    """

    config: ExtractConfig
    model: ModelSpec
    blocks: dict[int, BlockInfo]
    keys: tuple[FeatureKey, ...]
    data: DataSpec
    compute: ComputeSpec
    identity: dict[str, Any]
    checkpoint: Path | None
    checkpoint_sha256: str | None
    layouts: dict[FeatureKey, ArrayLayout]
    device_type: str = "cpu"

    @property
    def shapes(self) -> dict[FeatureKey, tuple[int, ...]]:
        """Each key's stored per-item shape."""
        return {k: lay.item_shape for k, lay in self.layouts.items()}

    @property
    def hash(self) -> str:
        return config_hash(self.identity)

    def array_bytes(self) -> list[int]:
        """Bytes per item of each extracted array (what one shard file holds per item)."""
        size = 2 if self.compute.out_dtype == "float16" else 4
        return [size * _prod(s) for s in self.shapes.values()]

    def item_bytes(self) -> int:
        return sum(self.array_bytes())

    def estimated_bytes(self) -> int:
        """Uncompressed size of every feature array of this run."""
        return sum(len(items) for items in self.data.splits.values()) * self.item_bytes()

    def seconds_per_item(self) -> float:
        """A rough CPU cost of one item, for sizing work units (never for anything stored): two 3×3
        convolutions per block up to the deepest one requested, at :data:`CPU_FLOPS`."""
        deepest = max(self.blocks)
        macs = sum(18 * b.channels**2 * b.height * b.width for b in self.model.blocks[:deepest])
        return 2.0 * macs * self.forwards_per_image() / CPU_FLOPS

    def forwards_per_image(self) -> int:
        """Model passes per image: views × timesteps × draws (the cost of an extraction, per image)."""
        return len(self.compute.passes(self.config.timesteps))

    @property
    def views(self) -> ViewSpec:
        return self.compute.view_spec(self.model.image_size)

    def summary(self) -> dict[str, Any]:
        return {
            "store": self.config.out,
            "format": format_for_path(self.config.out),
            "config_hash": self.hash,
            "model": self.config.model,
            "weights": str(self.checkpoint) if self.checkpoint else "random (--random-weights)",
            "blocks": [f"{n} ({b.path}, {b.channels}×{b.height}×{b.width})" for n, b in self.blocks.items()],
            "precision": self.compute.precision,
            "forward_batch": self.compute.forward_batch,
            "fuse_timesteps": self.compute.fuse,
            "views": self.compute.views,
            "augment": self.compute.augment,
            "forwards_per_image": self.forwards_per_image(),
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


def index_path(out: str) -> Path:
    """Where a tar source's index is cached: beside the store (``STORE.tar-index.json``)."""
    p = Path(out)
    return p.with_name(p.name + ".tar-index.json")


def make_plan(config: ExtractConfig, device: torch.device, cache_index: bool = True) -> ExtractPlan:
    """Resolve ``config`` for ``device`` and check everything that can be checked before anything is
    written: the model, its checkpoint (read memory-mapped) and class label, blocks, timesteps,
    pools and the data. No weights are loaded; blocks are measured on the meta device. A tar
    source's index is cached beside the store unless ``cache_index`` is False (a dry run writes nothing)."""
    model, checkpoint = check_model(config.model, config.flag_dict, config.checkpoint, config.random_weights, config.conditioning)
    infos = model.blocks
    numbers = resolve_blocks(config.blocks, infos)
    blocks = {n: infos[n - 1] for n in numbers}
    if not model.noised and (config.timesteps != (0,) or config.draws != 1):
        raise ConfigError(f"{model.name} is an image model without noise: its features are stored as t = 0 with one draw; "
                          "leave out --t and --draws (or pass --t 0)")  # fmt: skip
    for t in config.timesteps:
        if t >= model.steps:
            raise ConfigError(f"timestep {t} is out of range: this model has t in [0, {model.steps - 1}]")
    for n, b in blocks.items():
        for p in config.pools:
            if p is not None and p > min(b.height, b.width):
                raise ConfigError(
                    f"pool {p} is larger than block {n}'s {b.height}×{b.width} map; use a pool ≤ "
                    f"{min(b.height, b.width)} or 'full'"
                )
    compute = ComputeSpec.resolve(config, device, model.noise_shape[1], stored_identity(config))
    keys = tuple(FeatureKey(t, n, p) for t in config.timesteps for n in numbers for p in config.pools)
    data = discover(config.data, config.splits, config.data_options, index_path(config.out), write_index=cache_index)
    identity = {
        **store_identity(model, checkpoint, config.conditioning),
        **compute.identity(),
        "class_names": data.class_names,
        "data": {s: data.fingerprint(s) for s in sorted(data.splits)},
    }
    kept = config.draws if config.reduce == "none" else 1
    layouts = {}
    for k in keys:
        b = blocks[k.block]
        side = (b.height, b.width) if k.pool is None else (k.pool, k.pool)
        layouts[k] = ArrayLayout.of_map(b.channels, *side, views=config.views, draws=kept)
    return ExtractPlan(config, model, blocks, keys, data, compute, identity, checkpoint, identity["checkpoint_sha256"], layouts, device.type)
