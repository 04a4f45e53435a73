"""A Ctrl-C that Python drops where it was raised (an at-fork handler, a finaliser) still stops the run."""

from __future__ import annotations

import os
import signal

import pytest

from diffprobe.cli import interrupted_exit_code
from diffprobe.pipelines.extraction.interrupt import check, signals_as_interrupt


@pytest.fixture
def default_signals():
    """SIGINT and SIGTERM as an interactive shell starts Python (a background job inherits SIGINT ignored)."""
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    yield
    for s, h in before.items():
        signal.signal(s, h)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_swallowed_interrupt_is_raised_again_at_the_next_check(sig, default_signals):
    with signals_as_interrupt():
        check()  # nothing pending
        try:
            os.kill(os.getpid(), sig)
            for _ in range(1000):  # the handler runs between bytecodes
                pass
        except KeyboardInterrupt:
            pass  # as an "Exception ignored in …" callback would
        with pytest.raises(KeyboardInterrupt) as e:
            check()
        assert interrupted_exit_code(e.value) == 128 + sig
    check()  # the signal is forgotten once the run is over
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
