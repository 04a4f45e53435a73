"""Dense heads: the linear-segmentation protocol's BatchNorm + 1×1 convolution,
ddpm-segmentation's per-pixel MLP ensemble, and the paper's UperNet.

A head maps a list of (N, C_i, h_i, w_i) maps to (N, K, S, S) logits at the mask size S; ``loss``
is what training minimises and ``forward`` what evaluation takes the argmax of.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from diffprobe.probes.errors import ProbeError
from diffprobe.registry import Registry
from diffprobe.store.layout import IGNORE_INDEX


def _one_member(head: str, members: int) -> None:
    if members != 1:
        raise ProbeError(f"expected members=1 for the {head} head (an ensemble is the mlp head's: --head mlp --members {members})")


def _upsampled(maps: list[Tensor], size: int) -> Tensor:
    """The maps bilinearly upsampled to size × size and concatenated along channels."""
    return torch.cat([m if m.shape[-1] == size else F.interpolate(m, size=(size, size), mode="bilinear", align_corners=False)
                      for m in maps], dim=1)  # fmt: skip


class LinearDenseHead(nn.Module):
    """BatchNorm, then a 1×1 conv over the blocks' maps, each bilinearly upsampled to a common size
    (the largest map's); the logits are then upsampled (bilinear) to the mask size.

    Args:
        channels: C of each input map; n_classes: K; size: the common size.
    """

    def __init__(self, channels: list[int], n_classes: int, size: int, members: int = 1) -> None:
        super().__init__()
        _one_member("linear", members)
        self.size = size
        self.norm = nn.BatchNorm2d(sum(channels))
        self.classify = nn.Conv2d(sum(channels), n_classes, kernel_size=1)

    def forward(self, maps: list[Tensor], out_size: int) -> Tensor:
        """maps: [(N, C_i, h_i, w_i)] → (N, K, out_size, out_size) logits."""
        logits = self.classify(self.norm(_upsampled(maps, self.size)))
        return F.interpolate(logits, size=(out_size, out_size), mode="bilinear", align_corners=False)

    def loss(self, maps: list[Tensor], masks: Tensor) -> Tensor:
        return F.cross_entropy(self(maps, masks.shape[-1]), masks, ignore_index=IGNORE_INDEX)


class MLPDenseHead(nn.Module):
    """ddpm-segmentation's pixel classifier: every map upsampled to the mask size, each pixel's
    concatenated features through an MLP (Linear–ReLU–BatchNorm ×2, then Linear), ``members``
    independently initialised MLPs trained side by side; their softmax is averaged at evaluation.

    Args:
        channels: C of each input map; n_classes: K; size: unused (pixels are classified at the mask size);
        members: the ensemble's size; hidden: the MLP's widths.
    """

    def __init__(self, channels: list[int], n_classes: int, size: int, members: int = 1, hidden: tuple[int, int] = (256, 128)) -> None:
        super().__init__()
        c, (h1, h2) = sum(channels), hidden

        def mlp() -> nn.Sequential:  # 1×1 convolutions = the same MLP at every pixel
            return nn.Sequential(nn.Conv2d(c, h1, 1), nn.ReLU(), nn.BatchNorm2d(h1), nn.Conv2d(h1, h2, 1), nn.ReLU(),
                                 nn.BatchNorm2d(h2), nn.Conv2d(h2, n_classes, 1))  # fmt: skip

        self.members = nn.ModuleList(mlp() for _ in range(members))

    def forward(self, maps: list[Tensor], out_size: int) -> Tensor:
        """Log of the members' mean softmax: (N, K, out_size, out_size)."""
        x = _upsampled(maps, out_size)
        probs = torch.stack([F.softmax(m(x), dim=1) for m in self.members]).mean(0)
        return torch.log(probs.clamp_min(1e-12))

    def loss(self, maps: list[Tensor], masks: Tensor) -> Tensor:
        """The sum of the members' cross-entropies (each member learns on its own)."""
        x = _upsampled(maps, masks.shape[-1])
        return sum((F.cross_entropy(m(x), masks, ignore_index=IGNORE_INDEX) for m in self.members), torch.zeros((), device=x.device))


def _conv(c_in: int, c_out: int, k: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, k, padding=k // 2, bias=False), nn.BatchNorm2d(c_out), nn.ReLU())


class UperNetHead(nn.Module):
    """UperNet (Xiao et al. 2018), the paper's segmentation head: a pyramid pooling module on the
    coarsest map, a feature pyramid over the maps (1×1 laterals, top-down sums, 3×3 smoothing), every
    level upsampled to the finest and fused by a 3×3 conv, then a 1×1 classifier; logits upsampled
    to the mask size. The maps are the blocks given (any order; sorted by resolution here).

    Args:
        channels: C of each input map; n_classes: K; size: unused; width: the pyramid's channels;
        scales: the pyramid pooling's bin counts.
    """

    def __init__(self, channels: list[int], n_classes: int, size: int, members: int = 1, width: int = 128,
                 scales: tuple[int, ...] = (1, 2, 3, 6)) -> None:  # fmt: skip
        super().__init__()
        _one_member("upernet", members)
        self.scales = scales
        self.lateral = nn.ModuleList(_conv(c, width, 1) for c in channels)
        self.ppm = nn.ModuleList(nn.Sequential(nn.AdaptiveAvgPool2d(s), _conv(width, width, 1)) for s in scales)
        self.ppm_fuse = _conv(width * (len(scales) + 1), width, 3)
        self.smooth = nn.ModuleList(_conv(width, width, 3) for _ in channels)
        self.fuse = _conv(width * len(channels), width, 3)
        self.classify = nn.Conv2d(width, n_classes, 1)

    def forward(self, maps: list[Tensor], out_size: int) -> Tensor:
        order = sorted(range(len(maps)), key=lambda i: -maps[i].shape[-1])  # finest first
        lat = [self.lateral[i](maps[i]) for i in order]
        top = lat[-1]
        pooled = [F.interpolate(p(top), size=top.shape[-2:], mode="bilinear", align_corners=False) for p in self.ppm]
        lat[-1] = self.ppm_fuse(torch.cat([top, *pooled], 1))
        for j in range(len(lat) - 2, -1, -1):  # top-down
            lat[j] = lat[j] + F.interpolate(lat[j + 1], size=lat[j].shape[-2:], mode="bilinear", align_corners=False)
        levels = [self.smooth[order[j]](lat[j]) for j in range(len(lat))]
        fine = levels[0].shape[-2:]
        x = self.fuse(torch.cat([v if v.shape[-2:] == fine else F.interpolate(v, size=fine, mode="bilinear", align_corners=False)
                                 for v in levels], 1))  # fmt: skip
        return F.interpolate(self.classify(x), size=(out_size, out_size), mode="bilinear", align_corners=False)

    def loss(self, maps: list[Tensor], masks: Tensor) -> Tensor:
        return F.cross_entropy(self(maps, masks.shape[-1]), masks, ignore_index=IGNORE_INDEX)


#: a dense head of any kind
DenseHead = LinearDenseHead | MLPDenseHead | UperNetHead
#: Dense heads by name (``probe dense --head NAME``): each class takes (channels, n_classes, size, members=…).
HEADS: Registry[type[DenseHead]] = Registry("dense head", error=ProbeError)
HEADS.register("linear", LinearDenseHead)
HEADS.register("mlp", MLPDenseHead)
HEADS.register("upernet", UperNetHead)
