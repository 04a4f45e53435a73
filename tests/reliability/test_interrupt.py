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


def test_a_signal_the_process_ignores_stays_ignored(default_signals):
    """Started with SIGINT ignored (``nohup``, ``cmd &`` in a script), a run is not stopped by it; SIGTERM still stops it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with signals_as_interrupt():
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(1000):  # the handler would run between bytecodes
            pass
        check()  # nothing pending
        with pytest.raises(KeyboardInterrupt, match="signal 15"):
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(1000):
                pass
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_a_loader_worker_stopped_mid_handover_prints_no_traceback(monkeypatch, capsys):
    """A run that stops stops its loader workers; one stopped while handing a batch over resets the
    connection in multiprocessing's resource-sharing thread, which would print a traceback after the
    run said it stopped cleanly. It is a debug line; any other error there, or elsewhere, still prints."""
    import sys
    import threading

    from diffprobe.pipelines.extraction.interrupt import quiet_loader_handover_errors

    printed = []
    monkeypatch.setattr(sys, "excepthook", lambda kind, value, tb: printed.append((threading.current_thread().name, kind)))
    quiet_loader_handover_errors()
    quiet_loader_handover_errors()  # idempotent: one filter

    def serve(error: BaseException) -> None:  # what resource_sharer._serve does with an exception
        try:
            raise error
        except BaseException:
            sys.excepthook(*sys.exc_info())

    for error in (ConnectionResetError(104, "Connection reset by peer"), EOFError(), ValueError("a real bug")):
        t = threading.Thread(target=serve, args=(error,))  # named "Thread-N (serve)"
        t.name = t.name.replace("(serve)", "(_serve)")
        t.start()
        t.join()
    serve(ConnectionResetError(104, "in the main thread"))
    assert [kind for _, kind in printed] == [ValueError, ConnectionResetError]
    assert printed[1][0] == "MainThread"


def test_an_interrupt_python_drops_is_not_printed_but_raised_again(default_signals, monkeypatch):
    """Raised inside an at-fork handler (a loader worker starting) Python prints the interrupt as
    "Exception ignored in …" with a traceback and drops it; the run raises it again at its next
    check, so the report is a debug line. Other unraisable errors are printed as before."""
    class Finaliser:  # Python reports what a finaliser raises as unraisable, as it does for an at-fork handler
        def __init__(self, error: BaseException) -> None:
            self.error = error

        def __del__(self) -> None:
            raise self.error

    def report(error: BaseException) -> None:
        Finaliser(error)  # dropped at once: __del__ runs here

    import sys

    printed: list[BaseException] = []
    monkeypatch.setattr(sys, "unraisablehook", lambda info: printed.append(info.exc_value))  # what prints them
    with signals_as_interrupt():
        try:
            os.kill(os.getpid(), signal.SIGINT)
        except KeyboardInterrupt:
            pass
        report(KeyboardInterrupt("signal 2"))
        report(ValueError("a finaliser's own bug"))
        with pytest.raises(KeyboardInterrupt):
            check()
    assert [type(e) for e in printed] == [ValueError]
    report(KeyboardInterrupt("outside a run"))  # the hook is restored when the run ends
    assert [type(e) for e in printed] == [ValueError, KeyboardInterrupt]


def test_a_loader_iterator_interrupted_while_it_starts_prints_no_traceback(monkeypatch):
    """An interrupt while a loader iterator starts its workers leaves it half built; its finaliser
    then fails on a missing attribute after the run said it stopped. That report is a debug line; an
    AttributeError from any other finaliser still prints."""
    import sys

    from torch.utils.data.dataloader import _MultiProcessingDataLoaderIter

    from diffprobe.pipelines.extraction.interrupt import quiet_loader_handover_errors

    printed: list[tuple[str, BaseException]] = []
    monkeypatch.setattr(sys, "excepthook", lambda *a: None)  # (the filter is installed once per excepthook)
    monkeypatch.setattr(sys, "unraisablehook", lambda info: printed.append((getattr(info.object, "__qualname__", ""), info.exc_value)))

    class Other:
        def __del__(self) -> None:
            raise AttributeError("another finaliser's bug")

    half = _MultiProcessingDataLoaderIter.__new__(_MultiProcessingDataLoaderIter)  # its __init__ never ran
    del half
    assert [type(e) for _, e in printed] == [AttributeError], "without the filter, torch's finaliser error prints"
    printed.clear()
    quiet_loader_handover_errors()
    half = _MultiProcessingDataLoaderIter.__new__(_MultiProcessingDataLoaderIter)
    del half
    Other()
    assert [(where, str(e)) for where, e in printed] == [("test_a_loader_iterator_interrupted_while_it_starts_prints_no_traceback.<locals>.Other.__del__", "another finaliser's bug")]
