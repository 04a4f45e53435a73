"""A loaded timm model behind the backbone protocol: no noise, one "timestep", timm's input transform."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from diffprobe.extract.backbone import Backbone, Timesteps
from diffprobe.extract.hooks import BlockTap
from diffprobe.extract.noise import NoiseSchedule
from diffprobe.extract.spec import ModelSpec
from diffprobe.extract.timm.describe import TimmConfig, to_map, units

#: One step with ᾱ = 1: q_sample returns the clean input, so the pipeline needs no special case.
NO_NOISE = NoiseSchedule("none", 1, np.zeros(1))


class TimmBackbone(Backbone):
    """A frozen timm model; ``features`` are its ``feature_info`` outputs as (N, C, H, W)."""

    def __init__(self, spec: ModelSpec, net: Any, checkpoint: Path | None = None, checkpoint_sha256: str | None = None) -> None:
        super().__init__(spec, NO_NOISE, None, checkpoint, checkpoint_sha256)
        cfg: TimmConfig = spec.config
        self.net: Any = net
        self.tap = BlockTap([m for _, m in units(net)], to_map(net, cfg.features))
        self.mean: Tensor
        self.std: Tensor
        dev = next(net.parameters()).device  # the buffers live with the weights
        self.register_buffer("mean", torch.tensor(cfg.mean, device=dev).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(cfg.std, device=dev).view(1, 3, 1, 1), persistent=False)
        self.freeze()

    def encode(self, x0: Tensor) -> Tensor:
        """Images in [-1, 1] at ``scale_size`` → the centre ``input_size`` crop, normalised as the
        model was trained: (x − mean) / std of pixels in [0, 1].

        Args:
            x0: (N, 3, S, S) with S = scale_size.
        Returns:
            (N, 3, s, s) with s = input_size.
        """
        s = self.spec.config.input_size
        h, w = x0.shape[-2:]
        top, left = int(round((h - s) / 2)), int(round((w - s) / 2))  # as timm's (torchvision's) centre crop
        x = (x0[..., top:top + s, left:left + s] + 1) / 2
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def run_blocks(self, x_t: Tensor, t: Tensor | int | Timesteps, numbers: tuple[int, ...],
                   add: Mapping[int, Tensor] | None = None) -> dict[int, Tensor]:  # fmt: skip
        self._check_input(x_t)
        return self.tap.blocks(lambda: self.net.forward_features(x_t), numbers, add)

    def forward(self, x_t: Tensor, t: Tensor | int | Timesteps = 0) -> Tensor:
        """The model's pooled features (its classifier is not built): (N, D)."""
        self._check_input(x_t)
        return self.net(x_t)  # type: ignore[no-any-return]

    def extra_repr(self) -> str:
        ck = self.checkpoint.name if self.checkpoint else "random init"
        return f"name={self.name}, timm {self.spec.config.arch}, blocks={self.tap.n_blocks}, checkpoint={ck}"
