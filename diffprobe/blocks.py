"""Block numbering: what a block is (:class:`BlockInfo`) and resolving user block specs.

Every family numbers its blocks 1..L in forward order and knows their shapes without weights, on the
meta device (ADM: :func:`diffprobe.extract.adm.family.measure_blocks`, from the builder's layout)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

from diffprobe.errors import BlockError

BlockSpec = int | str


@dataclass(frozen=True)
class BlockInfo:
    """One block: number (1..L, forward order), module path, and its measured output shape
    (a transformer's tokens as their H×W grid)."""

    number: int
    path: str
    channels: int
    height: int
    width: int
    stage: str  # "input", "middle" or "output" for U-Nets; "transformer" for DiT

    @property
    def resolution(self) -> tuple[int, int]:
        return (self.height, self.width)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def resolve_blocks(specs: BlockSpec | Iterable[BlockSpec], blocks: Sequence[BlockInfo]) -> list[int]:
    """Turn block specs (paper numbers, digit strings, module paths, ``"middle"``) into numbers.

    Returns the numbers in the order given, without duplicates.

    Raises:
        BlockError: a spec names no block; the message gives the valid range and paths.
    """
    if isinstance(specs, (int, str)):
        specs = [specs]
    if not blocks:
        raise BlockError("no blocks are known to resolve block specs against")
    by_path = {b.path: b.number for b in blocks}
    numbers = {b.number for b in blocks}
    middle = [b.number for b in blocks if b.stage == "middle"]
    if middle:
        by_path.setdefault("middle", middle[0])
    last = len(blocks)
    whole = numbers == set(range(1, last + 1))  # the model's whole table (a store may record only the blocks it holds)
    example = ", ".join(dict.fromkeys(b.path for b in (blocks[0], *(b for b in blocks if b.stage == "middle"), blocks[-1])))
    out: list[int] = []
    for spec in specs:
        if isinstance(spec, bool):
            raise BlockError(f"invalid block {spec!r}")
        if isinstance(spec, int) or (isinstance(spec, str) and spec.strip().lstrip("-").isdigit()):
            n = int(spec)
            if n not in numbers and whole:
                parts = (f" (1..{middle[0] - 1} input, {middle[0]} middle, {middle[0] + 1}..{last} output)" if middle else "")
                raise BlockError(f"block {n} does not exist: this model has blocks 1..{last}{parts}")
            if n not in numbers:
                raise BlockError(f"block {n} is not among the known blocks {', '.join(f'{b.number} ({b.path})' for b in blocks)}")
        elif isinstance(spec, str) and spec.strip() in by_path:
            n = by_path[spec.strip()]
        else:
            raise BlockError(
                f"unknown block {spec!r}: give a block number{f' 1..{last}' if whole else ''} or a module path such as "
                f"{example} (see `diffprobe blocks MODEL`)"
            )
        if n not in out:
            out.append(n)
    return out
