"""The one rule for what commands write besides stores: an existing output is never replaced
silently. It is refused with a hint (``--overwrite``, or another name), exactly as a store made with
another configuration is.
"""

from __future__ import annotations

from pathlib import Path

from diffprobe.errors import OutputExistsError


def claim_output(path: str | Path, *, overwrite: bool = False, option: str = "--out") -> Path:
    """Check that ``path`` (a file or a folder a command is about to write) may be written.

    An existing file, or an existing non-empty folder, is refused unless ``overwrite``; with
    ``overwrite`` the command writes over it (files it writes are replaced; nothing else is deleted,
    so a mistyped ``--out`` never costs a folder). Nothing is touched when the check fails.

    Raises:
        OutputExistsError: ``path`` exists and ``overwrite`` is False.
    """
    p = Path(path).expanduser()
    taken = p.is_file() or (p.is_dir() and any(p.iterdir()))
    if taken and not overwrite:
        raise OutputExistsError(
            f"{p} already exists; pass --overwrite to replace it, or choose another {option}"
        )
    return p
