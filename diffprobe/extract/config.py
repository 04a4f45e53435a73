"""What an extraction is: the user's :class:`ExtractConfig`, recorded in every store it writes (it
resolves to a :class:`~diffprobe.extract.compute_spec.ComputeSpec` on each device)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from typing import Any

from diffprobe.errors import ConfigError
from diffprobe.extract.sources.options import DataOptions
from diffprobe.extract.spec import Conditioning
from diffprobe.registry import Registry
from diffprobe.store.layout import parse_pool

log = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
STORAGE_DTYPES = ("float16", "float32")
REDUCTIONS = ("mean", "none")
#: GroupNorm (+ scale-shift + SiLU) kernels of the ADM U-Net (see :mod:`diffprobe.extract.adm.kernels`),
#: imported on first use so that the CLI lists their names without torch.
NORM_KERNELS: Registry[Callable[..., Any]] = Registry("norm kernel")
NORM_KERNELS.register_lazy("torch", "diffprobe.extract.adm.kernels.group_norm:reference_kernel")
NORM_KERNELS.register_lazy("triton", "diffprobe.extract.adm.kernels.group_norm:fused_kernel")


@dataclass(frozen=True)
class ExtractConfig:
    """Everything that defines one extraction run.

    Attributes:
        data: an ImageFolder root (optionally with train/ val/ … split folders), a CSV/TSV manifest,
            WebDataset tar shards or a Hugging Face dataset on disk (see :func:`~diffprobe.extract.sources.discover.discover`).
        out: the store path (a directory → Zarr; ``.h5``/``.hdf5`` → HDF5).
        model, checkpoint, flags: the backbone (see :func:`diffprobe.load_backbone`); without a
            checkpoint a preset's bundled one is used.
        class_label, prompt, prompt_embedding: what every image is conditioned on (see
            :class:`~diffprobe.extract.family.Conditioning`).
        random_weights: no checkpoint at all: a seeded random initialisation (tests, benchmarks).
        timesteps: integer diffusion steps t. blocks: paper numbers or module paths.
        pools: adaptive-average-pool sizes p (None = the native map, "full" on the CLI).
        draws: noise draws K per (image, view, t); reduce: "mean" averages the K pooled features,
            "none" keeps them as an extra axis (N, K, C, p, p).
        views: V views per image: view 0 is the evaluation transform (the centre crop), views
            1..V−1 the ``augment`` augmentation (see :mod:`diffprobe.extract.augment`), with
            parameters a pure function of (seed, item id, view). With V > 1 arrays get a view axis
            before the draw axis: (N, V, C, p, p), or (N, V, K, C, p, p) with K draws kept.
        seed: noise seed (noise is a function of seed, item id, t and draw only).
        dtype: storage dtype. precision: compute precision ("auto" = bf16 on GPU, fp32 on CPU).
        forward_batch: rows per U-Net forward (None: 16 on CPU, 64 on GPU). Every forward has exactly
            this shape (short batches are padded), so stored bytes never depend on batching; it is
            part of the store's identity.
        compile: run the forward through torch.compile (falls back to eager, with a log line, where
            it is unavailable); part of the identity since fused kernels round differently.
        cuda_graphs: replay the compiled forward as CUDA graphs (torch.compile's "reduce-overhead"
            mode: no per-kernel launch cost); needs ``compile``; CUDA only (elsewhere a log line
            says it is not used). The same kernels run, so values do not change.
        channels_last: weights and activations in the channels-last (NHWC) memory layout that
            cuDNN's fastest convolutions use; part of the identity (other kernels round differently).
        norm_kernel: "torch", or "triton": each GroupNorm with the scale-shift and SiLU after it as
            one Triton kernel that reads and writes the activations once (ADM models; needs triton,
            which CUDA builds of torch include); part of the identity.
        batch_size, device, loader_workers, unit_size: throughput knobs that never change values
            (batch_size = images decoded per step).
        splits: restrict to these splits (empty = all). strict: the first bad image is an error.
        allow_nonfinite: extract with weights that hold NaN or Inf (refused otherwise: their
            features are NaN); not part of the store's identity.
        label_field, split_name, image_column, label_column, id_column: how to read tar shards and
            tables (see :class:`~diffprobe.extract.sources.options.DataOptions`).
        workers: 0 runs in this process; N > 0 starts a dask LocalCluster of N worker processes
            (one per GPU on CUDA). scheduler: address of an existing dask scheduler instead.
        shard: (i, n) runs only units whose global index ≡ i (mod n), without a scheduler.
        overwrite: replace an existing store made with another configuration.
    """

    data: str
    out: str
    model: str = "adm-256-uncond"
    checkpoint: str | None = None
    random_weights: bool = False
    flags: tuple[tuple[str, Any], ...] = ()
    class_label: int | None = None
    prompt: str | None = None
    prompt_embedding: str | None = None
    timesteps: tuple[int, ...] = (90,)
    blocks: tuple[int | str, ...] = (24,)
    pools: tuple[int | None, ...] = (1,)
    draws: int = 1
    reduce: str = "mean"
    views: int = 1
    augment: str = "paper"
    seed: int = 0
    dtype: str = "float16"
    precision: str = "auto"
    batch_size: int = 64
    forward_batch: int | None = None
    compile: bool = False
    cuda_graphs: bool = False
    channels_last: bool = False
    norm_kernel: str = "torch"
    fuse_timesteps: int | None = None
    device: str = "auto"
    loader_workers: int | None = None
    unit_size: int | None = None
    splits: tuple[str, ...] = ()
    label_field: str = "label"
    split_name: str | None = None
    image_column: str = "image"
    label_column: str | None = "label"
    id_column: str | None = None
    strict: bool = False
    allow_nonfinite: bool = False
    overwrite: bool = False
    workers: int = 0
    scheduler: str | None = None
    shard: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        def norm(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        norm("data", str(self.data))
        norm("out", str(self.out))
        if self.checkpoint is not None:
            norm("checkpoint", str(self.checkpoint))
        flags = self.flags.items() if isinstance(self.flags, dict) else self.flags
        norm("flags", tuple(sorted((str(k), tuple(v) if isinstance(v, list) else v) for k, v in flags)))
        ts = (self.timesteps,) if isinstance(self.timesteps, int) else tuple(self.timesteps)
        if not ts or any(isinstance(t, bool) or not isinstance(t, int) or t < 0 for t in ts):
            raise ConfigError(f"timesteps must be non-negative integers, got {self.timesteps!r}")
        norm("timesteps", tuple(dict.fromkeys(ts)))
        bl = (self.blocks,) if isinstance(self.blocks, (int, str)) else tuple(self.blocks)
        if not bl:
            raise ConfigError("blocks must name at least one block")
        norm("blocks", tuple(dict.fromkeys(int(b) if isinstance(b, str) and b.isdigit() else b for b in bl)))
        pl = (self.pools,) if isinstance(self.pools, (int, str)) or self.pools is None else tuple(self.pools)
        pools = tuple(dict.fromkeys(parse_pool(p) for p in pl))
        if not pools:
            raise ConfigError("pools must name at least one pool size (or 'full')")
        norm("pools", pools)
        norm("splits", (self.splits,) if isinstance(self.splits, str) else tuple(self.splits))
        checks = [
            (self.draws >= 1, f"draws must be >= 1, got {self.draws}"),
            (self.views >= 1, f"views must be >= 1, got {self.views}"),
            (self.reduce in REDUCTIONS, f"reduce must be one of {REDUCTIONS}, got {self.reduce!r}"),
            (self.dtype in STORAGE_DTYPES, f"dtype must be one of {STORAGE_DTYPES}, got {self.dtype!r}"),
            (self.precision in PRECISIONS, f"precision must be one of {PRECISIONS}, got {self.precision!r}"),
            (self.compile or not self.cuda_graphs, "cuda_graphs replays the compiled forward: add --compile (compile=True)"),
            (self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}"),
            (self.unit_size is None or self.unit_size >= 1, f"unit_size must be >= 1, got {self.unit_size}"),
            (self.forward_batch is None or self.forward_batch >= 1, f"forward_batch must be >= 1, got {self.forward_batch}"),
            (self.fuse_timesteps is None or self.fuse_timesteps >= 1, f"fuse_timesteps must be >= 1, got {self.fuse_timesteps}"),
            (self.loader_workers is None or self.loader_workers >= 0, f"loader_workers must be >= 0, got {self.loader_workers}"),
        ]
        if self.shard is not None:
            norm("shard", tuple(int(v) for v in self.shard))
            i, n = self.shard  # type: ignore[misc]
            checks.append((n >= 1 and 0 <= i < n, f"shard must be i/n with 0 <= i < n, got {i}/{n}"))
        checks.append((self.workers >= 0, f"workers must be >= 0, got {self.workers}"))
        checks.append((not (self.random_weights and self.checkpoint), "expected --checkpoint or --random-weights, not both"))
        modes = sum([self.workers > 0, self.scheduler is not None, self.shard is not None])
        checks.append((modes <= 1, "use only one of workers, scheduler and shard"))
        for ok, msg in checks:
            if not ok:
                raise ConfigError(msg)
        if self.norm_kernel not in NORM_KERNELS:
            raise NORM_KERNELS.unknown(self.norm_kernel)
        from diffprobe.extract.augment import get_augmentation  # numpy and PIL: not at import (instant --help)

        get_augmentation(self.augment)  # unknown names raise with the valid ones

    @property
    def flag_dict(self) -> dict[str, Any]:
        return dict(self.flags)

    @property
    def data_options(self) -> DataOptions:
        return DataOptions(self.label_field, self.split_name, self.image_column, self.label_column, self.id_column)

    @property
    def conditioning(self) -> Conditioning:
        return Conditioning(self.class_label, self.prompt, self.prompt_embedding)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["flags"] = dict(self.flags)
        for k in ("timesteps", "blocks", "pools", "splits"):
            d[k] = list(d[k])
        d["shard"] = list(self.shard) if self.shard else None
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ExtractConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"unknown config fields {sorted(unknown)}; valid: {sorted(known)}")
        return cls(**d)


def parse_shard(text: str) -> tuple[int, int]:
    """``"2/8"`` → (2, 8): run shard i of n (the range is checked by :class:`ExtractConfig`)."""
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise ConfigError(f"expected --shard as i/n such as 0/4, got {text!r}") from None
    return i, n
