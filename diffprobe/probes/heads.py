"""The paper's attention head and DifFormer fusion head as plain ``nn.Module``s.

Tokenizer (one per block): AdaptiveAvgPool2d to min(H, 16) → LayerNorm over (C, h, w) → 1×1 conv to
D → h·w tokens. A zero-initialised CLS token is prepended; pre-norm transformer blocks (multi-head
self-attention without qkv bias, MLP with GELU), no positional embedding; a linear layer reads the CLS
output. For block 24 of the 256 model (1024×16×16), D = 1024, 8 heads, depth 2 and 1000 classes this
has ≈27.8M parameters.

DifFormer: tokenizers are per block and shared across timesteps; for each timestep the tokens of all
its blocks are concatenated behind the CLS token and go through one transformer shared by all
timesteps; the per-timestep CLS outputs are concatenated → Linear(T·D → classes). For blocks
{19, 24, 30} × 3 timesteps of the 256 model: 64 + 256 + 256 + 1 = 577 tokens, ≈31.8M parameters.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

Shape = tuple[int, int, int]


class Tokenizer(nn.Module):
    """(B, C, H, W) → (B, h·w, D) with h = min(H, max_size)."""

    def __init__(self, shape: Shape, dim: int, max_size: int = 16) -> None:
        super().__init__()
        c, h, w = shape
        self.size = (min(h, max_size), min(w, max_size))
        self.pool = nn.AdaptiveAvgPool2d(self.size)
        self.norm = nn.LayerNorm([c, *self.size])
        self.proj = nn.Conv2d(c, dim, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(self.norm(self.pool(x))).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """Multi-head self-attention, (B, L, D) → (B, L, D); qkv without bias, output projection with."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"expected dim divisible by heads, got dim={dim}, heads={heads}")
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        out = torch.nn.functional.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class Block(nn.Module):
    """Pre-norm transformer block: x + Attn(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class Encoder(nn.Module):
    """CLS token + ``depth`` blocks: tokens (B, L, D) → CLS output (B, D)."""

    def __init__(self, dim: int, heads: int, depth: int, mlp_ratio: float) -> None:
        super().__init__()
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.blocks = nn.Sequential(*(Block(dim, heads, mlp_ratio) for _ in range(depth)))

    def forward(self, tokens: Tensor) -> Tensor:
        x = torch.cat([self.cls.expand(tokens.shape[0], -1, -1).to(tokens.dtype), tokens], dim=1)
        return self.blocks(x)[:, 0]


def _split(x: Tensor, shapes: Sequence[Shape]) -> list[Tensor]:
    """(B, Σ C·H·W) flat features → one (B, C, H, W) map per input."""
    sizes = [c * h * w for c, h, w in shapes]
    return [part.reshape(-1, *s) for part, s in zip(torch.split(x, sizes, dim=1), shapes)]


class AttentionHead(nn.Module):
    """The paper's attention head on one block: x (B, C·H·W) or (B, C, H, W) → logits (B, classes)."""

    def __init__(
        self, shape: Shape, n_classes: int, dim: int = 1024, heads: int = 8, depth: int = 2, mlp_ratio: float = 4.0, max_size: int = 16
    ) -> None:
        super().__init__()
        self.shape: Shape = (int(shape[0]), int(shape[1]), int(shape[2]))
        self.tokenizer = Tokenizer(shape, dim, max_size)
        self.encoder = Encoder(dim, heads, depth, mlp_ratio)
        self.head = nn.Linear(dim, n_classes)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 2:
            x = x.reshape(-1, *self.shape)
        return self.head(self.encoder(self.tokenizer(x)))


class DifFormerHead(nn.Module):
    """DifFormer fusion over inputs tagged (timestep group, block).

    Args:
        shapes: (C, H, W) of each input, in the column order of x.
        times: timestep group of each input (inputs sharing it are fused in one sequence).
        blocks: block id of each input (inputs sharing it share a tokenizer; shapes must agree).
    Forward: x (B, Σ C·H·W) → logits (B, classes).
    """

    def __init__(
        self,
        shapes: Sequence[Shape],
        times: Sequence[int],
        blocks: Sequence[int],
        n_classes: int,
        dim: int = 1024,
        heads: int = 8,
        depth: int = 2,
        mlp_ratio: float = 4.0,
        max_size: int = 16,
    ) -> None:
        super().__init__()
        if not len(shapes) == len(times) == len(blocks) or not shapes:
            raise ValueError(f"expected as many shapes, times and blocks (≥1), got {len(shapes)}, {len(times)}, {len(blocks)}")
        self.shapes: list[Shape] = [(int(s[0]), int(s[1]), int(s[2])) for s in shapes]
        self.times = [int(t) for t in times]
        self.blocks = [int(b) for b in blocks]
        block_shape: dict[int, Shape] = {}
        for b, s in zip(self.blocks, self.shapes):
            if block_shape.setdefault(b, s) != s:
                raise ValueError(f"expected one shape per block, got {block_shape[b]} and {s} for block {b}")
        self.tokenizers = nn.ModuleDict({str(b): Tokenizer(s, dim, max_size) for b, s in block_shape.items()})
        self.groups = sorted(set(self.times))
        self.encoder = Encoder(dim, heads, depth, mlp_ratio)
        self.head = nn.Linear(len(self.groups) * dim, n_classes)

    def forward(self, x: Tensor) -> Tensor:
        maps = _split(x, self.shapes)
        cls = []
        for t in self.groups:
            tokens = [self.tokenizers[str(b)](m) for m, tt, b in zip(maps, self.times, self.blocks) if tt == t]
            cls.append(self.encoder(torch.cat(tokens, dim=1)))
        return self.head(torch.cat(cls, dim=1))


def count_parameters(module: nn.Module) -> int:
    """Number of parameters (works on the meta device)."""
    return sum(p.numel() for p in module.parameters())
