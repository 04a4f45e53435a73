"""Block outputs of a network we did not write: forward hooks on the module that ends each block.

The network's own forward stays the single forward path. A :class:`BlockTap` hooks the last module
of every block once; during :meth:`BlockTap.run` the hooks capture the requested blocks' outputs,
add tensors to some of them (DifFeed's feedback), and stop the forward after the deepest requested
block by raising an exception that :meth:`~BlockTap.run` catches — so nothing after it is computed.
Outside ``run`` the hooks do nothing. A call's state is per thread, so threads may run forwards
through one tap at once (a CPU extraction's streams).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn

#: (module output) → its (N, C, H, W) tensor view, and back (for modules that return tokens)
ToMap = Callable[[Tensor], Tensor]


class _Stop(Exception):
    """Raised by the hook of the deepest requested block: the rest of the forward is not needed."""


@dataclass
class _Call:
    capture: frozenset[int]
    stop_after: int | None
    add: Mapping[int, Tensor]
    out: dict[int, Tensor] = field(default_factory=dict)


def first_tensor(output: Any) -> Tensor:
    """The hidden states a module returned: a tensor, the first item of a tuple, or ``.sample``."""
    if isinstance(output, Tensor):
        return output
    if isinstance(output, tuple):
        return output[0]
    sample = getattr(output, "sample", None)
    if isinstance(sample, Tensor):
        return sample
    raise TypeError(f"cannot find the hidden states in a {type(output).__name__} returned by a block")


def with_first_tensor(output: Any, tensor: Tensor) -> Any:
    """``output`` with its hidden states replaced by ``tensor`` (same structure)."""
    if isinstance(output, Tensor):
        return tensor
    if isinstance(output, tuple):
        return (tensor, *output[1:])
    return type(output)(sample=tensor)


class BlockTap:
    """Forward hooks on ``modules`` (block k ends at ``modules[k - 1]``).

    Args:
        modules: the module that ends each block, in block order.
        to_map: turns a block's output into (N, C, H, W) (DiT: tokens → their grid); ``from_map``
            the reverse, for tensors added to a block's output. Identity when None.
    """

    def __init__(self, modules: Sequence[nn.Module], to_map: ToMap | None = None, from_map: ToMap | None = None) -> None:
        self._local = threading.local()  # this thread's running call (``call``), if any
        self.to_map = to_map or (lambda x: x)
        self.from_map = from_map or (lambda x: x)
        self.handles = [m.register_forward_hook(self._hook(n)) for n, m in enumerate(modules, start=1)]
        self.n_blocks = len(modules)

    @property
    def _call(self) -> _Call | None:
        return getattr(self._local, "call", None)

    @_call.setter
    def _call(self, call: _Call | None) -> None:
        self._local.call = call

    def _hook(self, number: int) -> Callable[..., Any]:
        def hook(module: nn.Module, args: Any, output: Any) -> Any:
            call = self._call
            if call is None or (number not in call.capture and number not in call.add):
                return None
            h = first_tensor(output)
            replaced = None
            if number in call.add:
                h = h + self.from_map(call.add[number]).to(h.dtype)
                replaced = with_first_tensor(output, h)
            if number in call.capture:
                call.out[number] = self.to_map(h)
            if number == call.stop_after:
                raise _Stop
            return replaced

        return hook

    def run(self, forward: Callable[[], Any], capture: Sequence[int], stop_after: int | None = None,
            add: Mapping[int, Tensor] | None = None) -> tuple[Any, dict[int, Tensor]]:  # fmt: skip
        """Call ``forward()`` with the hooks armed.

        Returns:
            (the forward's return value, or None when it stopped early; {block: (N, C, H, W)}).
        """
        if self._call is not None:
            raise RuntimeError("BlockTap.run is not reentrant")
        call = _Call(frozenset(capture), stop_after, dict(add or {}))
        self._call = call
        try:
            result = forward()
        except _Stop:
            result = None
        finally:
            self._call = None
        missing = set(capture) - set(call.out)
        if missing:
            raise RuntimeError(f"blocks {sorted(missing)} were not reached by the forward")
        return result, call.out

    def blocks(self, forward: Callable[[], Any], numbers: tuple[int, ...], add: Mapping[int, Tensor] | None = None) -> dict[int, Tensor]:
        """A hooked family's ``run_blocks``: ``forward()`` up to the last of ``numbers`` (the rest of
        the network never runs), with ``add`` added on the way.

        Returns:
            {block number: (N, C, H, W)} in the order of ``numbers``.
        """
        _, feats = self.run(forward, numbers, max(numbers), add)
        return {n: feats[n] for n in numbers}

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
