"""The backbone protocol's dynamic half: a frozen, weight-loaded network that gives early-exit block
features of noised inputs. Every family (ADM, diffusers, …) implements :class:`Backbone`; the static
half (block table, schedule, identity) is :class:`~diffprobe.extract.family.ModelSpec`."""

from __future__ import annotations

import abc
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from diffprobe.blocks import BlockInfo, BlockSpec, resolve_blocks
from diffprobe.errors import ConfigError
from diffprobe.extract.noise import ForwardProcess
from diffprobe.extract.spec import Conditioning, ModelSpec


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

    def per_row(self) -> Tensor:
        """(N,) the timestep of every row."""
        return self.values[self.index]


class Backbone(nn.Module, abc.ABC):
    """A frozen network with its diffusion schedule, input transform, conditioning and provenance.

    Call it as ``backbone(x_t, t)`` for the full output, or ``backbone.features(x_t, t, blocks)``
    for block outputs (the forward stops after the deepest requested block). Inputs live in the
    space noise is added in: :meth:`encode` takes clean images there (the identity for pixel
    models, a VAE for latent ones).
    """

    def __init__(
        self,
        spec: ModelSpec,
        schedule: ForwardProcess,
        cond: Conditioning | None = None,
        checkpoint: Path | None = None,
        checkpoint_sha256: str | None = None,
    ) -> None:
        super().__init__()
        self.spec = spec
        self.name = spec.name
        self.schedule = schedule
        self.cond = cond or Conditioning()
        self.checkpoint = checkpoint
        self.checkpoint_sha256 = checkpoint_sha256

    def freeze(self) -> None:
        """No gradients, eval mode: call at the end of a subclass's ``__init__``."""
        self.requires_grad_(False)
        self.eval()

    @property
    def family(self) -> str:
        return self.spec.family

    @property
    def image_size(self) -> int:
        """Side of the square images :meth:`encode` takes."""
        return self.spec.image_size

    @property
    def noise_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of ``x_t``: the space noise is added in."""
        return self.spec.noise_shape

    @property
    def class_label(self) -> int | None:
        return self.cond.class_label

    @property
    def blocks(self) -> list[BlockInfo]:
        """Every block (number, module path, channels, resolution), measured on the meta device."""
        return list(self.spec.blocks)

    def block(self, spec: BlockSpec) -> BlockInfo:
        """The :class:`BlockInfo` of one block given by number or module path."""
        return self.spec.blocks[resolve_blocks(spec, self.spec.blocks)[0] - 1]

    def resolve_blocks(self, specs: BlockSpec | Iterable[BlockSpec]) -> list[int]:
        """Block numbers of ``specs`` (numbers, digit strings or module paths)."""
        return resolve_blocks(specs, self.spec.blocks)

    def encode(self, x0: Tensor) -> Tensor:
        """The input transform: (N, 3, S, S) clean images in [-1, 1] → (N, *noise_shape) clean
        inputs of the network (the identity for pixel-space models)."""
        return x0

    def features(self, x_t: Tensor, t: Tensor | int | Timesteps, blocks: BlockSpec | Iterable[BlockSpec]) -> dict[int, Tensor]:
        """Outputs of the requested blocks; nothing after the deepest one is computed.

        Args:
            x_t: (N, *noise_shape) noisy inputs.
            t: one integer timestep, (N,) timesteps, or :class:`Timesteps`.
            blocks: block numbers or module paths.
        Returns:
            {block number: (N, C_b, H_b, W_b)} in the order requested.
        """
        numbers = self.resolve_blocks(blocks)
        if not numbers:
            raise ValueError("no blocks requested")
        return self.run_blocks(x_t, t, tuple(numbers))

    def _check_input(self, x_t: Tensor) -> None:
        c = self.noise_shape[0]
        if x_t.dim() != 4 or x_t.shape[1] != c:
            raise ValueError(f"x_t must be (N, {c}, H, W), got {tuple(x_t.shape)}")

    def _per_row_t(self, x_t: Tensor, t: Tensor | int | Timesteps) -> Tensor:
        """(N,) int64 timesteps on x_t's device."""
        if isinstance(t, Timesteps):
            if t.index.numel() != x_t.shape[0]:
                raise ValueError(f"Timesteps index has {t.index.numel()} rows for {x_t.shape[0]} images")
            return t.per_row()
        tt = torch.as_tensor(t, device=x_t.device).long().reshape(-1)
        if tt.numel() == 1:
            tt = tt.expand(x_t.shape[0])
        if tt.numel() != x_t.shape[0]:
            raise ValueError(f"t must be one timestep or one per image ({x_t.shape[0]}), got {tt.numel()}")
        return tt

    @abc.abstractmethod
    def run_blocks(
        self, x_t: Tensor, t: Tensor | int | Timesteps, numbers: tuple[int, ...], add: Mapping[int, Tensor] | None = None
    ) -> dict[int, Tensor]:
        """:meth:`features` for block numbers already resolved: nothing but the forward, so this is
        the function to hand to ``torch.compile`` (where the family supports it). ``add``
        ({block: tensor}) is added to those blocks' outputs on the way (DifFeed's feedback).

        Args:
            x_t: (N, *noise_shape) noisy inputs; t: one timestep, (N,) or :class:`Timesteps`;
            numbers: block numbers.
        Returns:
            {block number: (N, C_b, H_b, W_b)}.
        """

    @abc.abstractmethod
    def forward(self, x_t: Tensor, t: Tensor | int | Timesteps) -> Tensor:
        """The network's full output, (N, C_out, H, W)."""

    def set_norm_kernel(self, name: str) -> None:
        """Run the network's GroupNorm (+ scale-shift + SiLU) through kernel ``name`` (see
        :mod:`diffprobe.extract.adm.kernels`). Families with their own layers have only "torch"."""
        if name != "torch":
            raise ConfigError(f"norm_kernel {name!r} is available for ADM models only; {self.name} ({self.family}) runs norm_kernel 'torch'")

    def provenance(self) -> dict[str, object]:
        """Family, model, weights: for logs and saved probes."""
        return {"family": self.family, "model": self.name, "checkpoint": str(self.checkpoint) if self.checkpoint else None,
                "checkpoint_sha256": self.checkpoint_sha256}  # fmt: skip
