"""Forward hooks of the families we did not write: a call's captures belong to the thread that made
it, so a CPU extraction's streams can run one network at once."""

from __future__ import annotations

import threading
import time

import torch
from torch import nn

from diffprobe.extract.hooks import BlockTap


class Slow(nn.Module):
    """Yields the GIL between two blocks, so another thread's forward runs in between."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(0.002)
        return x


def test_threads_running_one_tap_get_their_own_blocks():
    torch.manual_seed(0)
    layers = [nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 8)]
    net = nn.Sequential(layers[0], Slow(), *layers[1:], Slow())
    tap = BlockTap([layers[0], layers[2], layers[4]])
    inputs = [torch.randn(4, 8) for _ in range(12)]
    with torch.no_grad():
        want = [tap.blocks(lambda x=x: net(x), (1, 3), add={2: torch.full((4, 8), float(i))}) for i, x in enumerate(inputs)]
    got: dict[int, dict[int, torch.Tensor]] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(3)

    def run(rows: range) -> None:
        start.wait()
        try:
            with torch.no_grad():
                for i in rows:
                    got[i] = tap.blocks(lambda x=inputs[i]: net(x), (1, 3), add={2: torch.full((4, 8), float(i))})
        except BaseException as e:  # noqa: BLE001 — reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(range(j, 12, 3),)) for j in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for i, w in enumerate(want):
        assert got[i].keys() == w.keys() == {1, 3}
        for b in w:
            assert torch.equal(got[i][b], w[b]), f"forward {i}, block {b}: another thread's values"
    assert tap._call is None
