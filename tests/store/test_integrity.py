"""Checksums and digests: what new stores record, what old stores lack, and HDF5's fletcher32."""

from __future__ import annotations

import json
import shutil

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

import diffprobe
from diffprobe.cli import main
from diffprobe.errors import StoreCorruptError
from diffprobe.store.digests import digest
from diffprobe.store.integrity import deep_verify
from diffprobe.store.maintenance import export_store
from tests.helpers import extract_config


def test_markers_record_a_digest_of_every_array_and_keep_them_when_extended(small_manifest, small_store, tmp_path):
    out = shutil.copytree(small_store, tmp_path / "s.zarr")
    marker = json.loads((out / "_progress" / "val" / "unit-000001.json").read_text())
    assert marker["digest"] == "blake2b-128" and set(marker["digests"]) == {*marker["keys"], "valid"}
    with diffprobe.open_store(out) as s:
        assert marker["digests"]["t0150_b13_p2"] == digest(s.read("val", "t0150_b13_p2", items=slice(32, 50)))
        assert s.backend.group_attrs("val")["digests"]["item_id"] == digest(s.ids("val"))
    diffprobe.extract_features(extract_config(small_manifest, out, unit_size=32, timesteps=(90,), blocks=(13,), pools=(1,)), progress=False)
    grown = json.loads((out / "_progress" / "val" / "unit-000001.json").read_text())
    assert grown["digests"]["t0150_b13_p2"] == marker["digests"]["t0150_b13_p2"] and "t0090_b13_p1" in grown["digests"]
    with diffprobe.open_store(out) as s:
        assert deep_verify(s).ok


@pytest.mark.filterwarnings("ignore::UserWarning")  # zarr's own, about consolidating the rewritten copy
def test_a_store_without_checksums_or_digests_stays_readable_and_says_so(small_store, tmp_path):
    """A store written before checksums and digests: rewritten here without either."""
    import zarr

    old = tmp_path / "old.zarr"
    shutil.copytree(small_store, old)
    src = zarr.open_group(str(small_store), mode="r", use_consolidated=False)
    dst = zarr.open_group(str(old), mode="a", use_consolidated=False)
    for split in ("train", "val"):
        attrs = dict(dst[split].attrs["diffprobe"])
        attrs.pop("digests"), attrs.pop("digest")
        dst[split].attrs["diffprobe"] = attrs
        for name in src[split].array_keys():
            a = src[split][name]
            b = dst[split].create_array(name, shape=a.shape, dtype=a.dtype, chunks=a.chunks, shards=a.shards,
                                        fill_value=a.fill_value, dimension_names=a.metadata.dimension_names,
                                        attributes=dict(a.attrs), overwrite=True)  # zarr's default codecs: no crc32c
            b[...] = a[...]
    zarr.consolidate_metadata(str(old))
    for f in (old / "_progress").rglob("unit-*.json"):
        m = json.loads(f.read_text())
        m.pop("digests"), m.pop("digest")
        f.write_text(json.dumps(m))
    r = CliRunner().invoke(main, ["store", "info", str(old)])
    assert r.exit_code == 0 and "chunk checksums: NONE" in r.output
    r = CliRunner().invoke(main, ["store", "verify", str(old), "--deep"])
    assert r.exit_code == 0 and "no recorded digests" in r.output and "only their chunks' readability was checked" in r.output, r.output
    with diffprobe.open_store(old) as s, diffprobe.open_store(small_store) as ref:
        assert np.array_equal(s.read("val", "t0150_b13_p2"), ref.read("val", "t0150_b13_p2"))


def test_hdf5_chunks_carry_fletcher32_and_a_flipped_bit_is_found(small_store, tmp_path):
    h5 = export_store(small_store, tmp_path / "s.h5")
    with h5py.File(h5, "r") as f:
        ds = f["val/t0150_b13_p2"]
        assert ds.fletcher32
        info = ds.id.get_chunk_info(1)  # the second chunk of 32 rows: items 32–49
    with open(h5, "r+b") as f:
        f.seek(info.byte_offset + info.size // 2)
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 0x20]))
    with diffprobe.open_store(h5) as s:
        rep = deep_verify(s)
    assert [(d.split, d.array, d.unit, d.kind) for d in rep.damage] == [("val", "t0150_b13_p2", 1, "checksum")]
    assert_reading_fails_clearly(h5, "t0150_b13_p2")


def assert_reading_fails_clearly(path, name):
    """Every way of reading the damaged array raises one clear error that names the commands."""
    with diffprobe.open_store(path) as s:
        assert s.read("val", name, items=slice(0, 32)).shape[0] == 32  # undamaged chunks still read
        with pytest.raises(StoreCorruptError, match=rf"a chunk of val/{name} in .* fails to read .*store verify --deep .*store repair"):
            s.read("val", name)
        with pytest.raises(StoreCorruptError, match="store repair"):
            s.read("val", name, lazy=True).sum().compute()


def test_a_damaged_zarr_chunk_is_a_clear_error_for_every_reader(small_store, tmp_path):
    out = shutil.copytree(small_store, tmp_path / "s.zarr")
    target = out / "val" / "t0150_b13_p2" / "c" / "1"
    while target.is_dir():
        target = target / "0"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x04
    target.write_bytes(bytes(data))
    assert_reading_fails_clearly(out, "t0150_b13_p2")
    r = CliRunner().invoke(main, ["probe", "linear", str(out), "--t", "150", "--block", "13", "--pool", "2"])
    assert r.exit_code != 0 and "Traceback" not in r.output and "diffprobe store repair" in r.output, r.output


def test_nan_and_inf_as_computed_are_reported_by_the_deep_check_not_repaired(small_store, tmp_path):
    """Values that overflowed when computed (fp16) are intact as written: deep verify says so and
    what to do; repair has nothing to recompute; the plain check reads no values."""
    import zarr

    out = shutil.copytree(small_store, tmp_path / "s.zarr")
    arr = zarr.open_array(str(out / "val" / "t0150_b13_p2"), mode="r+")
    arr[33, 0] = np.nan
    arr[40, 1] = np.inf
    marker_path = out / "_progress" / "val" / "unit-000001.json"
    marker = json.loads(marker_path.read_text())
    marker["digests"]["t0150_b13_p2"] = digest(arr[32:50])
    marker_path.write_text(json.dumps(marker))
    assert CliRunner().invoke(main, ["store", "verify", str(out)]).exit_code == 0
    r = CliRunner().invoke(main, ["store", "verify", str(out), "--deep"])
    assert r.exit_code == 1 and "bad values: val/t0150_b13_p2: 1 rows with NaN, 1 rows with Inf" in r.output, r.output
    assert "--precision fp32" in r.output and "corrupt:" not in r.output
    r = CliRunner().invoke(main, ["-q", "store", "repair", str(out), "--no-progress"])
    assert r.exit_code == 0 and "nothing to repair" in r.output, r.output
