"""DiT (``DiTTransformer2DModel``): the transformer blocks, their tokens as (C, H, W) maps.

Block k is ``transformer_blocks.{k-1}``. Its output, (N, T, D) tokens in row-major patch order, is
returned as (N, D, H/p, W/p) for latent side H and patch size p, so pooling works as for U-Nets.
Every image gets the same class: DiT's null class (the unconditional one) unless a label is given.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from diffprobe.extract.backbone import Backbone, Timesteps
from diffprobe.extract.diffusers.latents import encode_latents
from diffprobe.extract.diffusers.runner import Runner, Unit, token_maps
from diffprobe.extract.hooks import BlockTap
from diffprobe.extract.spec import Conditioning, ModelSpec


def null_class(net_config: Mapping[str, object]) -> int:
    """DiT's unconditional label: the extra embedding after the ``num_embeds_ada_norm`` classes."""
    return int(net_config["num_embeds_ada_norm"])  # type: ignore[call-overload]


def dit_units(net: Any) -> list[Unit]:
    return [(f"transformer_blocks.{i}", b, "transformer") for i, b in enumerate(net.transformer_blocks)]


class DiTBackbone(Backbone):
    """A frozen DiT with the VAE whose latents it denoises."""

    def __init__(self, spec: ModelSpec, net: Any, vae: Any, cond: Conditioning | None = None,
                 checkpoint: Path | None = None, checkpoint_sha256: str | None = None) -> None:  # fmt: skip
        super().__init__(spec, spec.config.process(), cond, checkpoint, checkpoint_sha256)
        self.net: Any = net
        self.vae: Any = vae
        p = int(net.config.patch_size)
        _, h, w = spec.noise_shape
        to_map, from_map = token_maps((h // p, w // p))
        self.tap = BlockTap([m for _, m, _ in dit_units(net)], to_map, from_map)  # type: ignore[arg-type]
        label = self.cond.class_label
        self.label = null_class(net.config) if label is None else label
        self.freeze()

    def encode(self, x0: Tensor) -> Tensor:
        """Pixels → latents: the VAE posterior's mean × its scaling factor (deterministic)."""
        return encode_latents(self.vae, x0)

    def _call(self, x_t: Tensor, t: Tensor | int | Timesteps) -> dict[str, object]:
        self._check_input(x_t)
        y = torch.full((x_t.shape[0],), self.label, dtype=torch.long, device=x_t.device)
        return {"hidden_states": x_t, "timestep": self._per_row_t(x_t, t), "class_labels": y, "return_dict": False}

    def run_blocks(self, x_t: Tensor, t: Tensor | int | Timesteps, numbers: tuple[int, ...],
                   add: Mapping[int, Tensor] | None = None) -> dict[int, Tensor]:  # fmt: skip
        kw = self._call(x_t, t)
        return self.tap.blocks(lambda: self.net(**kw), numbers, add)

    def forward(self, x_t: Tensor, t: Tensor | int | Timesteps) -> Tensor:
        return self.net(**self._call(x_t, t))[0]

    def extra_repr(self) -> str:
        ck = self.checkpoint.name if self.checkpoint else "random init"
        return f"name={self.name}, DiT, blocks={self.tap.n_blocks}, class={self.label}, checkpoint={ck}"


class DiTRunner(Runner):
    """``DiTTransformer2DModel``: class-conditioned, the null class by default."""

    kind = "dit"
    process = "ddpm"

    def units(self, net: Any) -> list[Unit]:
        return dit_units(net)

    def grid(self, net: Any, cfg: Any) -> tuple[int, int]:
        p = int(net.config.patch_size)
        _, h, w = cfg.noise_shape
        return h // p, w // p

    def meta_inputs(self, net: Any, cfg: Any) -> dict[str, Any]:
        return {"hidden_states": torch.empty(1, *cfg.noise_shape), "timestep": torch.zeros(1, dtype=torch.long),
                "class_labels": torch.zeros(1, dtype=torch.long), "return_dict": False}  # fmt: skip

    def backbone(self, spec: ModelSpec, net: Any, vae: Any, model_dir: Any, cond: Conditioning,
                 checkpoint: Path | None, sha: str | None, device: torch.device, prepared: Any) -> Backbone:  # fmt: skip
        return DiTBackbone(spec, net, vae, cond, checkpoint, sha)


DIT = DiTRunner()
