"""Whether progress bars show: on a terminal by default; ``--progress/--no-progress`` (every command
with long work) sets it for the whole run."""

from __future__ import annotations

_SHOW: bool | None = None


def set_progress(show: bool | None) -> None:
    """Show bars always (True), never (False), or only on a terminal (None)."""
    global _SHOW
    _SHOW = show


def bar_disabled() -> bool | None:
    """tqdm's ``disable`` for the current policy (None: disabled unless on a terminal)."""
    return None if _SHOW is None else not _SHOW
