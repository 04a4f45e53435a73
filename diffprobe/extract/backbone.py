"""The frozen diffusion backbone that diffprobe extracts features from."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import torch
from torch import Tensor, nn

from diffprobe.errors import ConfigError
from diffprobe.extract.adm import ADMUNet
from diffprobe.extract.adm_config import ADMConfig
from diffprobe.extract.blocks import BlockInfo, BlockSpec, measure_blocks, resolve_blocks
from diffprobe.extract.noise import NoiseSchedule, make_schedule


@dataclass(frozen=True)
class Timesteps:
    """Per-item timesteps as their distinct values and each item's row among them.

    Built on the host, from Python ints, and copied asynchronously: creating a timestep tensor on
    a GPU from Python values, or finding its distinct values there, would make the host wait for
    all work queued before it.
    """

    values: Tensor  # (U,) int64
    index: Tensor  # (N,) int64

    @classmethod
    def blocks_of(cls, ts: Sequence[int], rows: int, device: torch.device) -> Timesteps:
        """``ts[j]`` for rows [j·rows, (j+1)·rows), on ``device``."""
        values = sorted(set(ts))
        idx = torch.tensor([values.index(t) for t in ts], dtype=torch.long).repeat_interleave(rows)
        vals = torch.tensor(values, dtype=torch.long)
        if device.type == "cuda":
            idx, vals = idx.pin_memory(), vals.pin_memory()
        return cls(vals.to(device, non_blocking=True), idx.to(device, non_blocking=True))


class Backbone(nn.Module):
    """A frozen ADM U-Net with its diffusion schedule and provenance.

    Call it as ``backbone(x_t, t)`` for the full output, or ``backbone.features(x_t, t, blocks)``
    for block outputs (the forward stops after the deepest requested block).
    """

    def __init__(
        self,
        name: str,
        config: ADMConfig,
        net: ADMUNet,
        checkpoint: Path | None = None,
        checkpoint_sha256: str | None = None,
        class_label: int | None = None,
    ) -> None:
        super().__init__()
        if class_label is not None:
            if not config.class_cond:
                raise ConfigError(f"class_label={class_label} given, but {name} is not class-conditional")
            if not 0 <= class_label < config.num_classes:
                raise ConfigError(f"class_label must be in [0, {config.num_classes - 1}], got {class_label}")
        self.name = name
        self.config = config
        self.net = net
        self.checkpoint = checkpoint
        self.checkpoint_sha256 = checkpoint_sha256
        self.class_label = class_label
        self.schedule: NoiseSchedule = make_schedule(config.noise_schedule, config.diffusion_steps)
        self.requires_grad_(False)
        self.eval()

    @property
    def image_size(self) -> int:
        return self.config.image_size

    @property
    def in_channels(self) -> int:
        return self.config.in_channels

    @cached_property
    def blocks(self) -> list[BlockInfo]:
        """Every block (paper number, module path, channels, resolution), measured by a dry run."""
        return list(measure_blocks(self.config))

    def block(self, spec: BlockSpec) -> BlockInfo:
        """The :class:`BlockInfo` of one block given by number or module path."""
        return self.blocks[resolve_blocks(spec, self.blocks)[0] - 1]

    def resolve_blocks(self, specs: BlockSpec | Iterable[BlockSpec]) -> list[int]:
        """Paper numbers of ``specs`` (numbers, digit strings or module paths)."""
        return resolve_blocks(specs, self.blocks)

    def _inputs(self, x_t: Tensor, t: Tensor | int | Timesteps) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """(t, y, index): per-item t and y, or — for :class:`Timesteps` — the distinct ones and
        each item's row among them."""
        if x_t.dim() != 4 or x_t.shape[1] != self.in_channels:
            raise ValueError(f"x_t must be (N, {self.in_channels}, H, W), got {tuple(x_t.shape)}")
        index = None
        if isinstance(t, Timesteps):
            if t.index.numel() != x_t.shape[0]:
                raise ValueError(f"Timesteps index has {t.index.numel()} rows for {x_t.shape[0]} images")
            tt, index = t.values, t.index
        else:
            tt = torch.as_tensor(t, device=x_t.device).long().reshape(-1)
            if tt.numel() == 1:
                tt = tt.expand(x_t.shape[0])
            if tt.numel() != x_t.shape[0]:
                raise ValueError(f"t must be one timestep or one per image ({x_t.shape[0]}), got {tt.numel()}")
        y = None
        if self.config.class_cond:
            if self.class_label is None:
                raise ConfigError(
                    f"{self.name} is class-conditional: pass --class-label K (class_label=K in Python), one fixed class "
                    "for every image; never the true labels, which would leak the answer into the features"
                )
            y = torch.full((tt.shape[0],), self.class_label, dtype=torch.long, device=x_t.device)
        return tt, y, index

    def features(self, x_t: Tensor, t: Tensor | int | Timesteps, blocks: BlockSpec | Iterable[BlockSpec]) -> dict[int, Tensor]:
        """Outputs of the requested blocks; nothing after the deepest one is computed.

        Args:
            x_t: (N, C, H, W) noisy images.
            t: one integer timestep, (N,) timesteps, or :class:`Timesteps`.
            blocks: paper numbers or module paths.
        Returns:
            {paper number: (N, C_b, H_b, W_b)} in the order requested.
        """
        numbers = self.resolve_blocks(blocks)
        if not numbers:
            raise ValueError("no blocks requested")
        return self.run_blocks(x_t, t, tuple(numbers))

    def run_blocks(
        self, x_t: Tensor, t: Tensor | int | Timesteps, numbers: tuple[int, ...], add: Mapping[int, Tensor] | None = None
    ) -> dict[int, Tensor]:
        """:meth:`features` for paper numbers already resolved: nothing but the forward, so this is
        the function to hand to ``torch.compile`` (resolving names measures the blocks on the meta
        device, which must stay outside a compiled graph). ``add`` ({block: tensor}) is added to
        those blocks' outputs on the way (DifFeed's feedback; see :meth:`ADMUNet.run`).

        Args:
            x_t: (N, C, H, W) noisy images; t: one timestep, (N,) or :class:`Timesteps`;
            numbers: paper block numbers.
        Returns:
            {paper number: (N, C_b, H_b, W_b)}.
        """
        tt, y, index = self._inputs(x_t, t)
        _, feats = self.net.run(x_t, tt, y, capture=numbers, stop_after=max(numbers), index=index, add=add)
        return {n: feats[n] for n in numbers}

    def forward(self, x_t: Tensor, t: Tensor | int | Timesteps) -> Tensor:
        """Full model output (N, C_out, H, W) — ε, plus the variance channels if learn_sigma."""
        tt, y, index = self._inputs(x_t, t)
        out, _ = self.net.run(x_t, tt, y, index=index)
        assert out is not None
        return out

    def extra_repr(self) -> str:
        ck = self.checkpoint.name if self.checkpoint else "random init"
        return f"name={self.name}, blocks={self.net.num_blocks}, checkpoint={ck}"
