"""DifFeed's trainable part: the feedback networks and the attention head, as plain ``nn.Module``s.

Feedback network (one per pair b → m(b)): 1×1 convolution without bias C_b → C_m, BatchNorm, ReLU,
then a bilinear resize to block m(b)'s resolution where the two differ. Its output is added to
encoder block m(b)'s output in the second pass (see :meth:`diffprobe.extract.adm.unet.ADMUNet.run`), and
the read block of that pass goes to the paper's attention head (:class:`~diffprobe.probes.heads.AttentionHead`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import cast

import torch.nn.functional as F
from torch import Tensor, nn

from diffprobe.extract.adm.feedback import Feedback
from diffprobe.extract.backbone import Backbone, Timesteps
from diffprobe.probes.heads import AttentionHead


class FeedbackNets(nn.Module):
    """{decoder block b: (N, C_b, H_b, W_b)} → {encoder block m(b): (N, C_m, H_m, W_m)} to add."""

    def __init__(self, feedback: Feedback) -> None:
        super().__init__()
        self.pairs = feedback.pairs
        self.sizes = {m: feedback.shapes[m][1:] for _, m in feedback.pairs}
        self.nets = nn.ModuleDict({
            str(b): nn.Sequential(
                nn.Conv2d(feedback.shapes[b][0], feedback.shapes[m][0], kernel_size=1, bias=False),
                nn.BatchNorm2d(feedback.shapes[m][0]),
                nn.ReLU(),
            )
            for b, m in feedback.pairs
        })  # fmt: skip

    def forward(self, feats: Mapping[int, Tensor]) -> dict[int, Tensor]:
        out: dict[int, Tensor] = {}
        for b, m in self.pairs:
            f = self.nets[str(b)](feats[b])
            if tuple(f.shape[-2:]) != tuple(self.sizes[m]):
                f = F.interpolate(f, size=self.sizes[m], mode="bilinear", align_corners=False)
            out[m] = out[m] + f if m in out else f
        return out

    def zero_(self) -> FeedbackNets:
        """Make every feedback exactly zero (the ReLU of a zero BatchNorm shift and scale): pass 2 then equals pass 1."""
        for net in self.nets.values():
            norm = cast(nn.BatchNorm2d, cast(nn.Sequential, net)[1])
            nn.init.zeros_(norm.weight)
            nn.init.zeros_(norm.bias)
        return self


class DifFeedHead(nn.Module):
    """Feedback nets + attention head: (frozen backbone, x_t, t, pass-1 features) → logits (N, classes).

    The second pass runs the backbone with the feedback added and stops after ``read_block``; only
    this module's parameters train, but gradients flow through the frozen encoder to the feedback nets.
    """

    def __init__(self, feedback: Feedback, read_block: int, read_shape: tuple[int, int, int], n_classes: int,
                 dim: int, heads: int, depth: int, mlp_ratio: float, max_size: int) -> None:  # fmt: skip
        super().__init__()
        self.read_block = read_block
        self.feedback = FeedbackNets(feedback)
        self.head = AttentionHead(read_shape, n_classes, dim, heads, depth, mlp_ratio, max_size)

    def second_pass(self, backbone: Backbone, x_t: Tensor, t: int | Tensor | Timesteps, pass1: Mapping[int, Tensor]) -> Tensor:
        """The read block's (N, C, H, W) features of the second pass, with this module's feedback added."""
        return backbone.run_blocks(x_t, t, (self.read_block,), add=self.feedback(pass1))[self.read_block]

    def forward(self, backbone: Backbone, x_t: Tensor, t: int | Tensor | Timesteps, pass1: Mapping[int, Tensor]) -> Tensor:
        return self.head(self.second_pass(backbone, x_t, t, pass1))
