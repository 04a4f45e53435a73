"""Digests of stored values: what a unit (or a split's item table, or an import) wrote, recorded
beside it so that :mod:`~diffprobe.store.integrity` can tell later whether the values are still there."""

from __future__ import annotations

import hashlib

import numpy as np

#: The digest recorded in markers and split attributes (its name is recorded beside it).
DIGEST = "blake2b-128"


class Digest:
    """:func:`digest` of an (N, ...) array fed in consecutive row windows: the same hex digest as of
    the whole array, without holding it (1.28M item ids: one window of rows at a time).

    ``shape`` and ``dtype`` are the whole array's; :meth:`add` takes its rows in order.
    """

    def __init__(self, shape: tuple[int, ...], dtype: np.dtype) -> None:
        self._h = hashlib.blake2b(digest_size=16)
        self._h.update(f"{tuple(shape)}".encode())
        self._text = np.dtype(dtype).kind in "OUST"
        self._first = True
        if not self._text:
            self._h.update(np.dtype(dtype).str.encode())

    def add(self, rows: np.ndarray) -> None:
        """Hash the next rows (a window of the array's leading axis)."""
        a = np.asarray(rows)
        if self._text:
            if a.size:  # strings: their text, one per line, over all windows
                self._h.update((("" if self._first else "\n") + "\n".join(map(str, a.reshape(-1).tolist()))).encode())
                self._first = False
        else:
            self._h.update(np.ascontiguousarray(a).reshape(-1).view(np.uint8).data)  # the bytes of tobytes(), not copied

    def hexdigest(self) -> str:
        return self._h.hexdigest()


def digest(values: np.ndarray) -> str:
    """BLAKE2b-128 of an array's values, dtype and shape (strings: their UTF-8 text, one per line)."""
    a = np.asarray(values)
    d = Digest(a.shape, a.dtype)
    d.add(a)
    return d.hexdigest()


def unit_digests(data: dict[str, np.ndarray]) -> dict[str, str]:
    """{array name: digest} of a unit's rows, for its done marker."""
    return {name: digest(values) for name, values in data.items()}


#: The row fingerprint recorded beside each digest (see :func:`row_print`).
ROW_PRINT = "blake2b-128 of the first row of each chunk"


def print_rows(n: int, chunk_rows: int) -> np.ndarray:
    """(k,) positions, within a unit of ``n`` rows, of the first row of each chunk of ``chunk_rows`` rows."""
    return np.arange(0, n, max(1, chunk_rows))


def row_print(values: np.ndarray, chunk_rows: int) -> str:
    """A unit's rows tied to their place, cheaply: the :func:`digest` of the first row of each of its
    chunks (``values`` (n, ...) the unit's rows).

    A chunk moved from elsewhere — another unit's, or another array's — brings other rows and fails
    it (features and item ids differ from row to row); hashing one row per chunk instead of all of
    them is what makes it cheap enough to check on every read (``benchmarks/read_integrity.py``).
    Changed bytes fail the chunk's checksum; :func:`digest` of all rows (``store verify --deep``)
    catches any change of any value.
    """
    return digest(np.asarray(values)[print_rows(len(values), chunk_rows)])


def unit_prints(data: dict[str, np.ndarray], chunk_rows: dict[str, int]) -> dict[str, list[int | str]]:
    """{array name: [chunk rows, :func:`row_print`]} of a unit's rows, for its done marker."""
    return {name: [int(chunk_rows[name]), row_print(values, chunk_rows[name])] for name, values in data.items()}
