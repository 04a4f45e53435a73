"""Lock files beside a store that leave nothing behind and are never inherited.

A lock is an ``flock`` on a small file beside the store. Three rules keep it honest:

- **Removed when released.** The holder unlinks the file while it still holds the lock; whoever
  opened the old file before that notices (the path no longer names the file it locked) and tries
  again with a new one. A successful run leaves no lock file.
- **Never inherited.** The descriptor is close-on-exec, and every process forked while it is held
  (the image loader's worker processes) closes its copy at once (:func:`os.register_at_fork`), so a
  writer killed with SIGKILL releases its lock at that moment, not when its orphaned workers exit.
- **A dead holder is no holder.** A lock file that names a process of this host that no longer
  exists is taken over at once, with a log line.

Failing to create the file (a read-only folder, a full disk) is one paragraph
(:class:`~diffprobe.errors.StoreIOError`), never a traceback.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import fcntl
import json
import logging
import os
import socket
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from diffprobe.errors import StoreIOError

log = logging.getLogger(__name__)

#: descriptors of the locks this process holds (closed in every forked child)
_HELD: set[int] = set()


def _close_held_in_child() -> None:
    for fd in list(_HELD):
        with contextlib.suppress(OSError):
            os.close(fd)  # the parent's lock stays: flock is released only when every copy is closed
    _HELD.clear()


os.register_at_fork(after_in_child=_close_held_in_child)

_HINTS = {
    errno.EACCES: "permission denied: the folder is not writable by you; write the store elsewhere (another --out) or fix its permissions",
    errno.EPERM: "the operation is not permitted: write the store elsewhere (another --out) or fix the folder's permissions",
    errno.EROFS: "the file system is read-only: write the store elsewhere (another --out)",
    errno.ENOSPC: "the disk is full: free space, or write the store elsewhere (another --out)",
    errno.EDQUOT: "the disk quota is exhausted: free space, or write the store elsewhere (another --out)",
}


def lock_io_failure(error: OSError, path: Path, what: str) -> StoreIOError:
    """One paragraph: the lock file ``path`` (of ``what``) could not be made."""
    hint = _HINTS.get(error.errno or -1, "fix the cause and run the command again")
    return StoreIOError(f"cannot take {what}: creating {path} failed: {error.strerror or error}. {hint}. Nothing was written")


def holder_text(raw: str) -> str:
    """Who a lock file says holds it: ``pid 123 on host since …: command``."""
    try:
        h = json.loads(raw)
        return f"pid {h.get('pid')} on {h.get('host')} since {h.get('since')}: {h.get('command')}"
    except (json.JSONDecodeError, AttributeError):
        return "unknown"


def holder_gone(raw: str) -> bool:
    """Whether the lock file's holder was a process of this host that no longer exists."""
    try:
        h = json.loads(raw)
        pid, host = int(h["pid"]), h["host"]
    except (json.JSONDecodeError, KeyError, TypeError, ValueError):
        return False
    if host != socket.gethostname() or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def _read(fd: int) -> str:
    os.lseek(fd, 0, os.SEEK_SET)
    return os.read(fd, 1 << 16).decode(errors="replace").strip()


def _same_file(fd: int, path: Path) -> bool:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    own = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (own.st_dev, own.st_ino)


def stamp() -> str:
    """What a writer records in its lock: pid, host, start and the command."""
    since = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    return json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": since, "command": " ".join(sys.argv[:6])})


@contextlib.contextmanager
def file_lock(path: Path, what: str, *, busy: Callable[[str], Exception] | None = None) -> Iterator[int]:
    """Hold an exclusive lock on ``path`` (created, and removed when released); yields its descriptor.

    Args:
        what: the lock's name in messages ("the writer lock of STORE").
        busy: None waits for the lock; else a held lock raises ``busy(holder's text)`` — after a
            lock whose holder is a dead process of this host is taken over.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise lock_io_failure(e, path, what) from e
    took_over = False
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as e:
            raise lock_io_failure(e, path, what) from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if busy is None else fcntl.LOCK_NB))
        except BlockingIOError:
            raw = _read(fd)
            if not took_over and holder_gone(raw) and _same_file(fd, path):
                log.warning("taking over %s: the run that held it (%s) is gone", what, holder_text(raw))
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)  # whoever still holds the old file (an orphaned process) keeps only that
                os.close(fd)
                took_over = True
                continue
            os.close(fd)
            assert busy is not None
            raise busy(holder_text(raw)) from None
        except BaseException:
            os.close(fd)
            raise
        if _same_file(fd, path):
            break
        fcntl.flock(fd, fcntl.LOCK_UN)  # the file was removed by its last holder after we opened it
        os.close(fd)
    _HELD.add(fd)
    try:
        yield fd
    finally:
        _HELD.discard(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # while still held: nobody can lock the old file and believe it current
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def record(fd: int, text: str) -> str:
    """Replace the lock file's text with ``text``; returns what it held before (a dead run's stamp, or "")."""
    previous = _read(fd)
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, text.encode())
    return previous
