"""Exceptions raised by diffprobe.

Every error a user can cause derives from :class:`DiffprobeError`, so a caller (or the CLI) can catch
one type.  The specific subclasses also derive from the matching built-in exception so that code
written against plain Python keeps working (``except KeyError`` around a store lookup, for example).
"""

from __future__ import annotations


class DiffprobeError(Exception):
    """Base class of every error diffprobe raises on bad input or a bad environment."""


class ConfigError(DiffprobeError, ValueError):
    """A configuration value (flag, preset, option) is invalid."""


class CheckpointError(DiffprobeError, ValueError):
    """A checkpoint file cannot be used with the requested model."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """The checkpoint path does not exist."""


class BlockError(DiffprobeError, KeyError):
    """A requested U-Net block does not exist."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0]) if self.args else ""


class StoreError(DiffprobeError, ValueError):
    """A feature store is missing, inconsistent, or was made with another configuration."""


class StoreKeyError(DiffprobeError, KeyError):
    """A requested split or (t, block, pool) array is not in the store."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class DataError(DiffprobeError, ValueError):
    """An image source (folder, manifest) is invalid."""


class OutputExistsError(DiffprobeError, FileExistsError):
    """An output file or folder exists and would be replaced (pass --overwrite to allow it)."""


class StoreBusyError(StoreError):
    """Another run is writing the store (the lock file names it)."""


class StoreIOError(StoreError, OSError):
    """Writing the store failed at the operating-system level (disk full, permissions, a vanished folder)."""


class StoreCorruptError(StoreError):
    """A chunk of the store fails its checksum or cannot be decoded: it changed on disk after it was written."""


class StoreIncompleteError(StoreError):
    """A reader asked for units of a split that are not done (a run was stopped, or is still writing)."""
