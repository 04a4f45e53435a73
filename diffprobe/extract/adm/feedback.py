"""DifFeed's feedback pairs: which decoder blocks feed back into which encoder blocks.

The paper (see docs/paper.md) feeds decoder block b back into its mirrored encoder block
m(b) = L + 1 − b, for b ∈ F = {21, 24, 27, 30, 33, 36} of the 37-block 256 model. Those are the
second output block of each decoder level (each level has ``num_res_blocks + 1`` output blocks), so
the same rule gives F for any ADM model: {12, 15, 18} → {8, 5, 2} for the bundled 19-block one.
Pure architecture facts from the measured block table; nothing here runs a network.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from diffprobe.blocks import BlockInfo
from diffprobe.errors import BlockError, ConfigError
from diffprobe.extract.spec import ModelSpec


def require_adm(spec: ModelSpec) -> None:
    """DifFeed mirrors an ADM decoder onto its encoder and trains on pixel-space noise."""
    if spec.family != "adm":
        raise ConfigError(f"DifFeed runs on ADM models (adm-* presets or adm with --flags); {spec.name} is a {spec.family} model. "
                          "Its cached features work with every other probe")  # fmt: skip


def mirror(block: int, n_blocks: int) -> int:
    """m(b) = L + 1 − b: the encoder block whose skip connection meets decoder block b."""
    return n_blocks + 1 - block


def default_sources(blocks: Sequence[BlockInfo], num_res_blocks: int) -> tuple[int, ...]:
    """The second output block of each decoder level: {21, 24, …, 36} for the 37-block 256 model."""
    first = next(b.number for b in blocks if b.stage == "output")
    per_level = num_res_blocks + 1
    return tuple(b.number for b in blocks if b.stage == "output" and (b.number - first) % per_level == 1 % per_level)


@dataclass(frozen=True)
class Feedback:
    """Feedback pairs (decoder block b → encoder block m(b)) with the shapes the feedback nets map between."""

    pairs: tuple[tuple[int, int], ...]
    shapes: dict[int, tuple[int, int, int]]  # block → (C, H, W), for every source and target

    @property
    def sources(self) -> tuple[int, ...]:
        return tuple(b for b, _ in self.pairs)

    @property
    def targets(self) -> tuple[int, ...]:
        return tuple(m for _, m in self.pairs)

    def to_dict(self) -> dict[str, Any]:
        return {"pairs": [list(p) for p in self.pairs], "shapes": {str(k): list(v) for k, v in self.shapes.items()}}


def plan_feedback(blocks: Sequence[BlockInfo], num_res_blocks: int, sources: Iterable[int] | None, read_block: int) -> Feedback:
    """The feedback of a model: ``sources`` (decoder blocks; None = :func:`default_sources`), each
    paired with its mirrored encoder block, checked against the block read after the second pass.

    Raises:
        BlockError: a source that is not a decoder block, or a target at or after the read block
            (its feedback could not reach the features read).
    """
    n = len(blocks)
    chosen = default_sources(blocks, num_res_blocks) if sources is None else tuple(dict.fromkeys(int(b) for b in sources))
    if not chosen:
        raise BlockError("expected at least one feedback block")
    decoder = [b.number for b in blocks if b.stage == "output"]
    pairs = []
    for b in chosen:
        if b not in decoder:
            raise BlockError(f"feedback block {b} is not a decoder block; choose among {decoder[0]}..{decoder[-1]}")
        m = mirror(b, n)
        if m >= read_block:
            raise BlockError(
                f"feedback block {b} goes to encoder block {m}, which is not before the read block {read_block}; "
                "its feedback could not change the features read"
            )
        pairs.append((b, m))
    shapes = {k: (blocks[k - 1].channels, blocks[k - 1].height, blocks[k - 1].width) for p in pairs for k in p}
    return Feedback(tuple(pairs), shapes)
