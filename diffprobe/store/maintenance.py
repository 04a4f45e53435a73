"""Store maintenance: format export (zarr ↔ hdf5) and finalizing a store after sharded runs."""

from __future__ import annotations

import datetime as _dt
import logging
from pathlib import Path

import numpy as np

from diffprobe.errors import StoreError
from diffprobe.store.backend import backend_for_path
from diffprobe.store.inspect import VerifyReport, failed_items, missing_lines, missing_units
from diffprobe.store.layout import FeatureKey, chunk_items
from diffprobe.store.ownership import check_replaceable, is_empty_dir
from diffprobe.store.store import open_store

log = logging.getLogger(__name__)


def export_store(src: str | Path, dst: str | Path, overwrite: bool = False) -> Path:
    """Copy a store to another path/format (a directory → Zarr, ``.h5``/``.hdf5`` → HDF5), unit by unit.

    Only finished work is copied: the rows of an extracted array (and of ``valid``) come over for the
    units whose done marker lists it; the rest stay NaN-filled and not done, as they were.
    """
    dst_p = Path(dst).expanduser()
    check_replaceable(dst_p, "DST")  # only a store or an empty folder is ever replaced
    if dst_p.exists() and not is_empty_dir(dst_p) and not overwrite:
        raise StoreError(f"{dst_p} exists (a diffprobe store); pass --overwrite to replace it")
    if Path(src).expanduser().resolve() == dst_p.resolve():
        raise StoreError("source and destination are the same path")
    with open_store(src) as s:
        out = backend_for_path(dst_p)(dst_p, "w")
        try:
            out.update_root_attrs(s.attrs)
            for split in s.splits:
                b = s.backend
                marks = s.markers(split)
                out.create_group(split, b.group_attrs(split))
                unit = s.unit_size(split)
                for name in b.arrays(split):
                    shape, dtype, attrs = b.array_info(split, name)
                    kind = "str" if dtype.kind in "UTO" else str(dtype)
                    row = int(np.prod(shape[1:], dtype=np.int64)) * (dtype.itemsize if kind != "str" else 64)
                    out.create_array(split, name, shape, kind, chunk_items(unit, max(row, 1)), unit, b.array_dims(split, name), attrs)
                    per_unit = name == "valid" or FeatureKey.is_key(name)
                    for u, (a, c) in enumerate(s.units(split)):
                        if per_unit and (u not in marks or (name != "valid" and name not in marks[u].get("keys", ()))):
                            continue  # not finished: nothing of it to copy
                        out.write_rows(split, name, a, b.read_rows(split, name, slice(a, c)))
                for u, m in marks.items():
                    out.write_marker(split, u, m)
            out.flush()
        finally:
            out.close()
    log.info("exported %s → %s", src, dst_p)
    return dst_p


def finalize_store(path: str | Path) -> VerifyReport:
    """After sharded runs: check every unit is done, then consolidate metadata and record it.

    The store is only marked finalized when complete; the report names what is missing.
    """
    with open_store(path, mode="a") as s:
        rep = VerifyReport()
        for split in s.splits:
            rep.missing_units[split] = missing_units(s, split)
            rep.failed_items[split] = failed_items(s, split)
        if rep.ok:
            s.backend.update_root_attrs({"finalized": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")})
            s.backend.consolidate()
            s.backend.flush()
    return rep


def finalize_lines(rep: VerifyReport) -> list[str]:
    """A :func:`finalize_store` report as the lines ``store finalize`` prints (the verdict last)."""
    out = missing_lines(rep.missing_units, "missing")
    if not rep.ok:
        return [*out, "store is NOT complete: run the missing shards (or the plain extract command) again"]
    return [*out, f"finalized: every unit is done ({rep.n_failed} failed item(s) recorded); metadata consolidated"]
