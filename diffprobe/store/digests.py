"""Digests of stored values: what a unit (or a split's item table, or an import) wrote, recorded
beside it so that :mod:`~diffprobe.store.integrity` can tell later whether the values are still there."""

from __future__ import annotations

import hashlib

import numpy as np

#: The digest recorded in markers and split attributes (its name is recorded beside it).
DIGEST = "blake2b-128"


def digest(values: np.ndarray) -> str:
    """BLAKE2b-128 of an array's values, dtype and shape (strings: their UTF-8 text, one per line)."""
    a = np.asarray(values)
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{a.shape}".encode())
    if a.dtype.kind in "OUST":
        h.update("\n".join(map(str, a.reshape(-1).tolist())).encode())
    else:
        h.update(a.dtype.str.encode())
        h.update(np.ascontiguousarray(a).reshape(-1).view(np.uint8).data)  # the bytes of tobytes(), not copied
    return h.hexdigest()


def unit_digests(data: dict[str, np.ndarray]) -> dict[str, str]:
    """{array name: digest} of a unit's rows, for its done marker."""
    return {name: digest(values) for name, values in data.items()}
