"""How diffprobe runs one kind of diffusers denoiser: a :class:`Runner` per kind, in :data:`RUNNERS`.

A runner knows a kind's blocks (the module that ends each, in forward order), how its block outputs
become (N, C, H, W) maps (token grids for transformers; the image stream of joint text–image
blocks), the inputs of a forward on the meta device (to measure the blocks without weights), the
defaults of its text conditioning, and which backbone class runs it. A new kind is one module with a
runner plus one line here.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor, nn

from diffprobe.extract.hooks import BlockTap
from diffprobe.registry import Registry

if TYPE_CHECKING:
    from diffprobe.extract.backbone import Backbone
    from diffprobe.extract.diffusers.config import DiffusersConfig
    from diffprobe.extract.diffusers.layout import ModelDir
    from diffprobe.extract.spec import Conditioning, ModelSpec

#: (module path, the module that ends the block, stage)
Unit = tuple[str, nn.Module, str]


def token_maps(grid: tuple[int, int]) -> tuple[Callable[[Tensor], Tensor], Callable[[Tensor], Tensor]]:
    """(tokens → map, map → tokens) for a ``grid`` = (h, w) of row-major tokens."""
    h, w = grid

    def to_map(x: Tensor) -> Tensor:  # (N, T, D) → (N, D, h, w)
        return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], h, w)

    def from_map(x: Tensor) -> Tensor:  # (N, D, h, w) → (N, T, D)
        return x.flatten(2).transpose(1, 2)

    return to_map, from_map


def _swap_streams(module: nn.Module, args: Any, output: Any) -> Any:
    """(text, image) → (image, text) and back: see :meth:`Runner.tap`."""
    return (output[1], output[0], *output[2:])


class Runner(abc.ABC):
    """One kind of diffusers denoiser (see the module's docstring)."""

    kind: ClassVar[str]
    #: blocks return (text states, image states), as MM-DiT's joint blocks do: the image stream is tapped
    streams: ClassVar[bool] = False
    #: the diffusers class of the autoencoder whose latents it denoises (None: pixel space)
    autoencoder: ClassVar[str | None] = "AutoencoderKL"
    #: conditioned on a prompt's text-encoder states (the empty prompt by default)
    text_conditioned: ClassVar[bool] = False
    #: the forward process the kind is trained with ("ddpm", "rectified-flow"); None: as its scheduler says
    process: ClassVar[str | None] = None

    @abc.abstractmethod
    def units(self, net: Any) -> list[Unit]:
        """Every block, in forward order."""

    def grid(self, net: Any, cfg: DiffusersConfig) -> tuple[int, int] | None:
        """The (h, w) grid of a transformer's image tokens (row-major), or None for a U-Net's maps."""
        return None

    @abc.abstractmethod
    def meta_inputs(self, net: Any, cfg: DiffusersConfig) -> dict[str, Any]:
        """The keyword arguments of one forward of a batch of one, on the current (meta) device."""

    def prepare(self, cfg: DiffusersConfig, model_dir: ModelDir | None, cond: Conditioning, device: torch.device) -> Any:
        """What is computed before the denoiser is loaded, handed to :meth:`backbone` (a text
        condition: its encoders are loaded, used and freed first, so they never share the device
        with the denoiser); None by default."""
        return None

    @abc.abstractmethod
    def backbone(self, spec: ModelSpec, net: Any, vae: Any, model_dir: ModelDir | None, cond: Conditioning,
                 checkpoint: Path | None, sha: str | None, device: torch.device, prepared: Any) -> Backbone:  # fmt: skip
        """The backbone around the loaded ``net`` and ``vae`` (weights on ``device``)."""

    def text_defaults(self, model: dict[str, Any], model_dir: ModelDir | None) -> dict[str, Any]:
        """The conditioning settings of a text-conditioned kind ({} for the others): "null" ("empty":
        the text encoders on the empty prompt, or "zeros"), "max_tokens", "guidance"."""
        return {}

    def tap(self, net: Any, cfg: DiffusersConfig) -> BlockTap:
        """Hooks on every block's last module, its output read as an (N, C, H, W) map.

        For joint blocks (``streams``) a hook registered before the tap's swaps their (text, image)
        output to (image, text), so the tap reads (and may add to) the image stream, and one
        registered after it swaps back before the network sees it: the forward is unchanged.
        """
        modules = [m for _, m, _ in self.units(net)]
        grid = self.grid(net, cfg)
        to_map, from_map = token_maps(grid) if grid else (None, None)
        if self.streams:
            for m in modules:
                m.register_forward_hook(_swap_streams)
        tap = BlockTap(modules, to_map, from_map)
        if self.streams:
            for m in modules:
                m.register_forward_hook(_swap_streams)
        return tap


#: Every kind's runner by kind name (the kinds of :data:`~diffprobe.extract.diffusers.describe.KINDS`).
RUNNERS: Registry[Runner] = Registry("diffusers model kind")
RUNNERS.register_lazy("unet", "diffprobe.extract.diffusers.unet:PIXEL")
RUNNERS.register_lazy("sd", "diffprobe.extract.diffusers.unet:SD")
RUNNERS.register_lazy("dit", "diffprobe.extract.diffusers.dit:DIT")
RUNNERS.register_lazy("sdxl", "diffprobe.extract.diffusers.sdxl:SDXL")
RUNNERS.register_lazy("sd3", "diffprobe.extract.diffusers.mmdit:SD3")
RUNNERS.register_lazy("flux", "diffprobe.extract.diffusers.mmdit:FLUX")
RUNNERS.register_lazy("sana", "diffprobe.extract.diffusers.tokens:SANA")
RUNNERS.register_lazy("pixart", "diffprobe.extract.diffusers.tokens:PIXART")


def runner(kind: str) -> Runner:
    """The runner of ``kind``."""
    return RUNNERS.get(kind)
