"""Training loops show epoch, loss and accuracy on a terminal (tqdm's ``disable=None``), and nothing elsewhere."""

from __future__ import annotations

import io
import sys

import pytest
import torch

from diffprobe.probes import create_probe
from diffprobe.probes.training import count_hits
from tests.probes.support import blobs


class Terminal(io.StringIO):
    """A stderr that says it is a terminal."""

    def isatty(self) -> bool:
        return True


@pytest.fixture(scope="module")
def data():
    X, y = blobs(20, 3, (4, 2, 2), sep=3.0, seed=4)
    return X, y


@pytest.mark.parametrize("name,params,shown", [
    ("linear", {"epochs": 2}, ("linear probe", "2/2", "epoch", "loss=", "acc=")),
    ("attention", {"dim": 8, "heads": 2, "depth": 1, "epochs": 2, "device": "cpu"}, ("AttentionProbe", "2/2", "loss=", "acc=")),
    ("logistic", {"Cs": (0.1, 1.0)}, ("logistic C sweep", "2/2", "val_acc=", "logistic C=", "loss=")),
])  # fmt: skip
def test_fit_shows_a_bar_on_a_terminal_only(monkeypatch, data, name, params, shown):
    X, y = data
    term = Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    create_probe(name, **params).fit(X, y)
    for text in shown:
        assert text in term.getvalue(), (text, term.getvalue()[-300:])
    pipe = io.StringIO()  # not a terminal
    monkeypatch.setattr(sys, "stderr", pipe)
    create_probe(name, **params).fit(X, y)
    assert pipe.getvalue() == ""


def test_accuracy_is_counted_on_the_device_per_head():
    y = torch.tensor([0, 1, 2])
    logits = torch.tensor([[5.0, 0, 0], [5.0, 0, 0], [0, 0, 5.0]])  # rows 0 and 2 right
    assert count_hits(logits, y).item() == 2
    heads = torch.stack([logits, torch.eye(3) * 5], dim=1)  # (B, H=2, K): the second head gets all three
    assert count_hits(heads, y).item() == pytest.approx(2 / 2 + 1 / 2 + 2 / 2)
