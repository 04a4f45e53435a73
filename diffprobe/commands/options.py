"""Option parsing shared by commands (comma lists of ints, blocks, pools)."""

from __future__ import annotations

from typing import Any

import click


class CommaList(click.ParamType):
    """``90,150`` or ``1-19`` (repeatable option values are concatenated). ``kind``: int, block, pool or str."""

    name = "list"

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> tuple:
        if isinstance(value, tuple):
            return value
        out: list[Any] = []
        for tok in str(value).split(","):
            tok = tok.strip()
            if not tok:
                continue
            if self.kind in ("int", "block") and "-" in tok.strip("-") and all(p.isdigit() for p in tok.split("-", 1)):
                lo, hi = (int(p) for p in tok.split("-", 1))
                if lo > hi:
                    self.fail(f"empty range {tok!r}", param, ctx)
                out.extend(range(lo, hi + 1))
            elif self.kind == "int" or (self.kind == "block" and tok.isdigit()):
                try:
                    out.append(int(tok))
                except ValueError:
                    self.fail(f"expected integers separated by commas, got {tok!r}", param, ctx)
            elif self.kind == "pool":
                if tok.lower() == "full":
                    out.append(None)
                elif tok.isdigit() and int(tok) > 0:
                    out.append(int(tok))
                else:
                    self.fail(f"pool sizes are positive integers or 'full', got {tok!r}", param, ctx)
            else:
                out.append(tok)
        if not out:
            self.fail("expected at least one value", param, ctx)
        return tuple(out)


def flatten(values: tuple[tuple, ...]) -> tuple:
    """Merge the tuples of a ``multiple=True`` CommaList option."""
    return tuple(v for group in values for v in group)


def stack_options(f: Any, options: list[Any]) -> Any:
    """Apply click option decorators to ``f`` so that they list in the given order in --help."""
    for opt in reversed(options):
        f = opt(f)
    return f
