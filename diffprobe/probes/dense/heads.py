"""Dense heads: the linear-segmentation protocol's BatchNorm + 1×1 convolution."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class LinearDenseHead(nn.Module):
    """BatchNorm, then a 1×1 conv over the blocks' maps, each bilinearly upsampled to a common size;
    the logits are then upsampled (bilinear) to the mask size.

    Args:
        channels: C of each input map; n_classes: K; size: the common size (the largest map's).
    """

    def __init__(self, channels: list[int], n_classes: int, size: int) -> None:
        super().__init__()
        self.size = size
        self.norm = nn.BatchNorm2d(sum(channels))
        self.classify = nn.Conv2d(sum(channels), n_classes, kernel_size=1)

    def forward(self, maps: list[Tensor], out_size: int) -> Tensor:
        """maps: [(N, C_i, h_i, w_i)] → (N, K, out_size, out_size) logits."""
        x = torch.cat([m if m.shape[-1] == self.size else F.interpolate(m, size=(self.size, self.size), mode="bilinear",
                                                                          align_corners=False) for m in maps], dim=1)  # fmt: skip
        logits = self.classify(self.norm(x))
        return F.interpolate(logits, size=(out_size, out_size), mode="bilinear", align_corners=False)


HEADS = {"linear": LinearDenseHead}
