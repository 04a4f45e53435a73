"""Paper block numbering: resolving user block specs and measuring block shapes by a dry run."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache

import torch

from diffprobe.errors import BlockError
from diffprobe.extract.adm import ADMUNet
from diffprobe.extract.adm_config import ADMConfig

BlockSpec = int | str


@dataclass(frozen=True)
class BlockInfo:
    """One U-Net block: paper number (1..L), module path, and its measured output shape."""

    number: int
    path: str
    channels: int
    height: int
    width: int
    stage: str  # "input", "middle" or "output"

    @property
    def resolution(self) -> tuple[int, int]:
        return (self.height, self.width)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@lru_cache(maxsize=32)
def measure_blocks(cfg: ADMConfig) -> tuple[BlockInfo, ...]:
    """Measure every block's output shape with a forward pass on the meta device (no memory)."""
    with torch.device("meta"):
        net = ADMUNet(cfg)
        x = torch.empty(1, cfg.in_channels, cfg.image_size, cfg.image_size)
        t = torch.zeros(1, dtype=torch.long)
        y = torch.zeros(1, dtype=torch.long) if cfg.class_cond else None
    paths = net.block_paths()
    _, feats = net.run(x, t, y, capture=range(1, len(paths) + 1))
    n_in = len(net.input_blocks)
    out = []
    for i, path in enumerate(paths, start=1):
        _, c, h, w = feats[i].shape
        stage = "input" if i <= n_in else "middle" if i == n_in + 1 else "output"
        out.append(BlockInfo(i, path, int(c), int(h), int(w), stage))
    return tuple(out)


def resolve_blocks(specs: BlockSpec | Iterable[BlockSpec], blocks: Sequence[BlockInfo]) -> list[int]:
    """Turn block specs (paper numbers, digit strings, module paths, ``"middle"``) into numbers.

    Returns the numbers in the order given, without duplicates.

    Raises:
        BlockError: a spec names no block; the message gives the valid range and paths.
    """
    if isinstance(specs, (int, str)):
        specs = [specs]
    by_path = {b.path: b.number for b in blocks}
    by_path["middle"] = by_path["middle_block"]
    last = len(blocks)
    out: list[int] = []
    for spec in specs:
        if isinstance(spec, bool):
            raise BlockError(f"invalid block {spec!r}")
        if isinstance(spec, int) or (isinstance(spec, str) and spec.strip().lstrip("-").isdigit()):
            n = int(spec)
            if not 1 <= n <= last:
                raise BlockError(
                    f"block {n} does not exist: this model has blocks 1..{last} "
                    f"(1..{by_path['middle_block'] - 1} input, {by_path['middle_block']} middle, "
                    f"{by_path['middle_block'] + 1}..{last} output)"
                )
        elif isinstance(spec, str) and spec.strip() in by_path:
            n = by_path[spec.strip()]
        else:
            raise BlockError(
                f"unknown block {spec!r}: give a paper number 1..{last} or a module path such as "
                f"input_blocks.0, middle_block, output_blocks.0 (see `diffprobe blocks MODEL`)"
            )
        if n not in out:
            out.append(n)
    return out
