"""How an :class:`~diffprobe.extract.config.ExtractConfig` runs on one device: the resolved
:class:`ComputeSpec` (the settings that define the stored values, and how the forward is run)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from diffprobe.extract.config import ExtractConfig
    from diffprobe.extract.noise import Pass
    from diffprobe.extract.views import ViewSpec

log = logging.getLogger(__name__)


def default_forward_batch(device: torch.device) -> int:
    """Rows per U-Net forward when not set: small on CPU (latency), larger on GPU (throughput)."""
    return 64 if device.type == "cuda" else 16


#: Pixels (rows × H × W) one forward should hold before stacking more passes stops paying. On a
#: GPU: the 256×256 model at 64 rows already keeps an H100/H200 busy (the issue's measurements used
#: 64–128 rows). On a CPU: 16 rows of 32×32 (this project's 2-core VM, 32×32 model: 4 timesteps at
#: 4 images per forward ran 1.13× faster fused into 16 rows, at 16 images 0.84–0.97× fused into 64).
FUSE_TARGET_PIXELS = {"cuda": 64 * 256 * 256, "cpu": 16 * 32 * 32}


def default_fuse(passes: int, forward_batch: int, image_size: int, device: torch.device) -> int:
    """(t, draw) passes stacked into one forward when not set (``passes`` of one view: views never
    share a forward, so view 0's forwards are those of an extraction without views).

    Enough passes that a forward holds about :data:`FUSE_TARGET_PIXELS` for the device — so small
    models and small forward batches fill it, and big ones run one pass per forward — balanced so
    the last group of passes is as full as the others.
    """
    target_pixels = FUSE_TARGET_PIXELS.get(device.type, FUSE_TARGET_PIXELS["cpu"])
    target = max(1, target_pixels // (forward_batch * image_size * image_size))
    if passes <= 1 or target == 1:
        return 1
    groups = -(-passes // target)
    return -(-passes // groups)


@dataclass(frozen=True)
class ComputeSpec:
    """The settings that define the stored values, resolved for one device.

    Attributes:
        seed, draws, reduce: the noise (see :class:`ExtractConfig`). views, augment: the views.
        precision: fp32, bf16 or fp16 (resolved: never "auto"). out_dtype: the storage dtype.
        forward_batch: rows per U-Net forward; every forward has exactly ``fuse × forward_batch`` rows.
        compile: the forward runs through torch.compile. fuse: (t, draw) passes per forward.
        cuda_graphs, channels_last, norm_kernel: how the forward runs (see :class:`ExtractConfig`).
    """

    seed: int
    draws: int
    reduce: str
    precision: str
    out_dtype: str
    forward_batch: int
    compile: bool = False
    fuse: int = 1
    views: int = 1
    augment: str = "none"
    cuda_graphs: bool = False
    channels_last: bool = False
    norm_kernel: str = "torch"

    @classmethod
    def resolve(cls, config: ExtractConfig, device: torch.device, image_size: int, stored: Mapping[str, Any] | None = None) -> ComputeSpec:
        """The spec of ``config`` on ``device``; ``stored`` is an existing store's identity.

        A setting given explicitly is used as given (a mismatch with an existing store is then
        refused when the store is prepared). A setting left at auto takes the existing store's
        value, so resuming or extending a store just works — also on another kind of device;
        otherwise its default for the device.
        """
        from diffprobe.device import resolve_precision

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
        augment = config.augment if config.views > 1 else "none"
        return cls(config.seed, config.draws, config.reduce, precision, config.dtype, forward_batch, config.compile, fuse,
                   config.views, augment, config.cuda_graphs, config.channels_last, config.norm_kernel)  # fmt: skip

    def view_spec(self, image_size: int) -> ViewSpec:
        """How the views of each item are made, for a model taking ``image_size`` pixels."""
        from diffprobe.extract.views import ViewSpec

        return ViewSpec(self.views, self.augment, self.seed, image_size)

    def passes(self, timesteps: Iterable[int]) -> tuple[Pass, ...]:
        """Every (view, t, draw) pass for ``timesteps``, in a fixed order (view-major, t sorted)."""
        ts = sorted(set(timesteps))
        return tuple((v, t, d) for v in range(self.views) for t in ts for d in range(self.draws))

    def identity(self) -> dict[str, Any]:
        """The spec's part of a store's identity (field names as stores record them)."""
        return {
            "seed": self.seed, "draws": self.draws, "reduce": self.reduce, "dtype": self.out_dtype,
            "precision": self.precision, "forward_batch": self.forward_batch, "fuse_timesteps": self.fuse,
            "compile": self.compile,
            # Stores without views keep the identity (and hash) they always had.
            **({"views": self.views, "augment": self.augment} if self.views > 1 else {}),
            # Likewise the forward's layout and norm kernel, which round differently from the default.
            **({"channels_last": True} if self.channels_last else {}),
            **({"norm_kernel": self.norm_kernel} if self.norm_kernel != "torch" else {}),
        }  # fmt: skip
