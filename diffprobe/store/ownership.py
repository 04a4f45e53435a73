"""What diffprobe may delete or replace: its own stores and empty folders, nothing else.

Every path that removes or replaces something on disk — ``extract --overwrite``, a store rebuilt
because no unit of it ever ran, ``store export --overwrite``, an HDF5 store's working copy — asks
:func:`check_replaceable` (or calls :func:`remove_store`, which asks it) first. Whether a path holds a
store is a capability of each backend (:meth:`~diffprobe.store.backend.Backend.holds_store`); a
folder or file that no backend recognises is refused with a message that names what is there.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from diffprobe.errors import OutputExistsError
from diffprobe.sizes import format_bytes
from diffprobe.store.backend import BACKENDS

log = logging.getLogger(__name__)

#: Entries of a folder named in a refusal.
_SHOWN = 5


def holds_store(path: str | Path) -> bool:
    """Whether ``path`` is a diffprobe store of any backend (readable or damaged, but recognisably one)."""
    p = Path(path).expanduser()
    return any(cls.holds_store(p) for cls in BACKENDS.values())


def is_empty_dir(path: Path) -> bool:
    return path.is_dir() and not any(path.iterdir())


def describe(path: str | Path) -> str:
    """What is at ``path``, for a message: ``a folder holding 3 entries (manifest.csv, masks/, notes.txt)``."""
    p = Path(path).expanduser()
    if p.is_symlink() and not p.exists():
        return "a broken symbolic link"
    if p.is_dir():
        names = sorted(e.name + ("/" if e.is_dir() else "") for e in p.iterdir())
        shown = ", ".join(names[:_SHOWN]) + (" …" if len(names) > _SHOWN else "")
        return f"a folder holding {len(names)} entr{'y' if len(names) == 1 else 'ies'} ({shown})" if names else "an empty folder"
    if p.is_file():
        return f"a file of {format_bytes(p.stat().st_size)}"
    return "something that is neither a file nor a folder"


def check_replaceable(path: str | Path, option: str = "--out") -> None:
    """Refuse to replace ``path`` unless it is absent, an empty folder, or a diffprobe store.

    Raises:
        OutputExistsError: anything else is there; the message names it and never suggests
            replacing it (nothing is touched).
    """
    p = Path(path).expanduser()
    if not (p.exists() or p.is_symlink()) or is_empty_dir(p) or holds_store(p):
        return
    raise OutputExistsError(
        f"{p} is {describe(p)}, not a diffprobe store: diffprobe replaces only its own stores and empty folders, "
        f"so nothing was deleted. Choose another {option} (a new folder name, or a new NAME.h5)"
    )


def remove_store(path: str | Path, option: str = "--out") -> None:
    """Delete the store (or empty folder) at ``path``; anything else is refused (:func:`check_replaceable`)."""
    p = Path(path).expanduser()
    check_replaceable(p, option)
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p)
    elif p.exists() or p.is_symlink():
        p.unlink()
