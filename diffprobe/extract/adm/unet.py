"""The ADM U-Net with one forward path that can capture block outputs and stop early.

Block numbering follows the paper: 1..L in forward order — the input blocks (block 1 is the input
conv), then the middle block, then the output blocks. The final GroupNorm/SiLU/conv is not a block.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

import torch
from torch import Tensor, nn

from diffprobe.extract.adm.config import ADMConfig
from diffprobe.extract.adm.layers import AttentionBlock, Downsample, EmbedSequential, GroupNorm32, ResBlock, Upsample, timestep_embedding


class ADMUNet(nn.Module):
    """guided-diffusion's ``UNetModel`` architecture (2-D), built from an :class:`ADMConfig`."""

    def __init__(self, cfg: ADMConfig) -> None:
        super().__init__()
        self.cfg = cfg
        mc = cfg.num_channels
        emb_dim = 4 * mc
        heads_up = cfg.num_heads_upsample if cfg.num_heads_upsample is not None else cfg.num_heads
        attn_ds = cfg.attention_ds

        def res(ch_in: int, ch_out: int, **kw: bool) -> ResBlock:
            return ResBlock(ch_in, emb_dim, cfg.dropout, ch_out, cfg.use_scale_shift_norm, **kw)

        def attn(ch: int, heads: int) -> AttentionBlock:
            return AttentionBlock(ch, heads, cfg.num_head_channels, cfg.use_new_attention_order)

        self.time_embed = nn.Sequential(nn.Linear(mc, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        if cfg.class_cond:
            self.label_emb = nn.Embedding(cfg.num_classes, emb_dim)

        ch = int(cfg.mult[0] * mc)
        self.input_blocks = nn.ModuleList([EmbedSequential(nn.Conv2d(cfg.in_channels, ch, 3, padding=1))])
        ds = 1
        #: (channels, downsampling factor) of every block's output, in block order
        self.block_grid: list[tuple[int, int]] = [(ch, ds)]
        for level, m in enumerate(cfg.mult):
            for _ in range(cfg.num_res_blocks):
                layers: list[nn.Module] = [res(ch, int(m * mc))]
                ch = int(m * mc)
                if ds in attn_ds:
                    layers.append(attn(ch, cfg.num_heads))
                self.input_blocks.append(EmbedSequential(*layers))
                self.block_grid.append((ch, ds))
            if level != len(cfg.mult) - 1:
                down = res(ch, ch, down=True) if cfg.resblock_updown else Downsample(ch, True)
                self.input_blocks.append(EmbedSequential(down))
                ds *= 2
                self.block_grid.append((ch, ds))

        skip_chans = [c for c, _ in self.block_grid]  # every input block's output is a skip connection
        self.middle_block = EmbedSequential(res(ch, ch), attn(ch, cfg.num_heads), res(ch, ch))
        self.block_grid.append((ch, ds))

        self.output_blocks = nn.ModuleList()
        for level, m in reversed(list(enumerate(cfg.mult))):
            for i in range(cfg.num_res_blocks + 1):
                layers = [res(ch + skip_chans.pop(), int(m * mc))]
                ch = int(m * mc)
                if ds in attn_ds:
                    layers.append(attn(ch, heads_up))
                if level and i == cfg.num_res_blocks:
                    layers.append(res(ch, ch, up=True) if cfg.resblock_updown else Upsample(ch, True))
                    ds //= 2
                self.output_blocks.append(EmbedSequential(*layers))
                self.block_grid.append((ch, ds))

        self.out = nn.Sequential(
            GroupNorm32(ch), nn.SiLU(), nn.Conv2d(int(cfg.mult[0] * mc), cfg.out_channels, 3, padding=1)
        )

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the weights (inputs are cast to it)."""
        conv = self.out[2]
        assert isinstance(conv, nn.Conv2d)
        return conv.weight.dtype

    @property
    def num_blocks(self) -> int:
        """L, the number of paper-numbered blocks."""
        return len(self.input_blocks) + 1 + len(self.output_blocks)

    def block_paths(self) -> list[str]:
        """Module path of every block, index i ↔ paper block i + 1."""
        return (
            [f"input_blocks.{i}" for i in range(len(self.input_blocks))]
            + ["middle_block"]
            + [f"output_blocks.{i}" for i in range(len(self.output_blocks))]
        )

    def embed(self, t: Tensor, y: Tensor | None, index: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """Timestep (and class) embedding of the distinct (t, y) pairs of a batch.

        Embedding rows are computed once per distinct pair, one pair at a time, not once per item:
        this is cheaper, and it makes every item's features independent of batch size and of the
        other timesteps in the batch (a GEMM's rows can round differently when the number of rows
        changes).

        Args:
            t: (N,) timesteps; y: (N,) labels or None.
            index: when given, t and y are already the U distinct pairs and index (N,) is each
                item's row among them (found on the host: finding them on a GPU synchronises it).
        Returns:
            (emb, index): emb (U, 4·num_channels) for the U distinct pairs and index (N,) into it
            (None on the meta device, where emb is per item).
        """
        if self.cfg.class_cond and y is None:
            raise ValueError("this model is class-conditional and needs labels y")
        if index is None and t.device.type != "meta":
            pairs = torch.stack([t.long(), y.long() if y is not None else torch.zeros_like(t, dtype=torch.long)])
            uniq, index = torch.unique(pairs, dim=1, return_inverse=True)
            t, y = uniq[0], (uniq[1] if y is not None else None)
        if index is None:
            emb = self.time_embed(timestep_embedding(t, self.cfg.num_channels).to(self.dtype))
        else:  # one row at a time: a row's value must not depend on how many distinct pairs there are
            emb = torch.cat([self.time_embed(timestep_embedding(t[i : i + 1], self.cfg.num_channels).to(self.dtype)) for i in range(len(t))])
        if y is not None:
            emb = emb + self.label_emb(y)
        return emb, index

    def run(
        self,
        x: Tensor,
        t: Tensor,
        y: Tensor | None = None,
        capture: Collection[int] = (),
        stop_after: int | None = None,
        index: Tensor | None = None,
        add: Mapping[int, Tensor] | None = None,
    ) -> tuple[Tensor | None, dict[int, Tensor]]:
        """The forward pass; the only one in this package.

        Args:
            x: (N, C_in, H, W) noisy input x_t.
            t: (N,) integer timesteps.
            y: (N,) class labels, for class-conditional models.
            capture: paper block numbers whose outputs to return.
            stop_after: return right after this block (no later block is computed); None runs
                the whole network.
            index: (N,) rows into t and y when those hold only the distinct pairs (see :meth:`embed`).
            add: {block number: tensor} added to that block's output before anything reads it — the
                next block, the skip connection of an input block, and ``capture`` (DifFeed's
                feedback; each tensor broadcasts to (N, C_b, H_b, W_b)).
        Returns:
            (output, features): output is (N, C_out, H, W), or None when stopped early; features
            maps each captured block number to its (N, C_b, H_b, W_b) output.
        """
        feats: dict[int, Tensor] = {}
        want = set(capture)
        emb, index = self.embed(t, y, index)
        h = x.to(self.dtype)
        skips: list[Tensor] = []
        n = 0

        def visit(h: Tensor) -> Tensor:
            nonlocal n
            n += 1
            if add is not None and n in add:
                h = h + add[n]
            if n in want:
                feats[n] = h
            return h

        def done() -> bool:
            return stop_after is not None and n >= stop_after

        for block in self.input_blocks:
            h = visit(block(h, emb, index))
            skips.append(h)
            if done():
                return None, feats
        h = visit(self.middle_block(h, emb, index))
        if done():
            return None, feats
        for block in self.output_blocks:
            h = visit(block(torch.cat([h, skips.pop()], dim=1), emb, index))
            if done():
                return None, feats
        return self.out(h).to(x.dtype), feats

    def forward(self, x: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        """Full model output (N, C_out, H, W): ε (and the variance interpolation if learn_sigma)."""
        out, _ = self.run(x, t, y)
        assert out is not None
        return out
