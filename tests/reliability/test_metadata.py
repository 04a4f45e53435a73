"""Damage that verify and repair did not see: metadata is checked before it is trusted.

A feature array's shape edited (20 → 40 rows, or 10^15): `store info` said complete, `verify --deep`
passed, `repair` had nothing to do, probes refused or died with MemoryError. A split's n_items edited
to 10^12 made `store info` and `verify` build a list of units until memory ran out; a label array
shaped 10^12 made `--deep` allocate 7 TiB; negative or wrong-rank shapes, bogus dtypes, truncated
zarr.json and a chunk size of 0 ended in tracebacks.
"""

from __future__ import annotations

import json
import resource

import numpy as np
import pytest

import diffprobe
from tests.pipelines.extraction.test_faults import assert_identical
from tests.reliability.conftest import KEY, cli


def edit(path, change):
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))


def meta(store, name=KEY, split="val"):
    return store / split / name / "zarr.json"


DAMAGE = {  # what is done to the tiny store's metadata, and what verify says of it
    "rows 20 → 40": (
        lambda s: edit(meta(s), lambda d: d.update(shape=[40, 64, 2, 2])),
        f"val/{KEY}: it has 40 rows, but the split has 20 items",
    ),
    "rows 10^15": (lambda s: edit(meta(s), lambda d: d.update(shape=[10**15, 64, 2, 2])), f"val/{KEY}: it has 1000000000000000 rows"),
    "n_items 10^12": (
        lambda s: edit(s / "val" / "zarr.json", lambda d: d["attributes"]["diffprobe"].update(n_items=10**12)),
        "split val: n_items is 1000000000000, but its item table has 20 rows",
    ),
    "label shaped 10^12": (lambda s: edit(meta(s, "label"), lambda d: d.update(shape=[10**12])), "val/label: it has 1000000000000 rows"),
    "negative shape": (
        lambda s: edit(meta(s), lambda d: d.update(shape=[-20, 64, 2, 2])),
        f"val/{KEY}: its shape [-20, 64, 2, 2] is not a list of counts",
    ),
    "wrong rank": (
        lambda s: edit(meta(s), lambda d: d.update(shape=[20, 64, 4])),
        f"val/{KEY}: its chunk shape [8, 64, 2, 2] is not 3 sizes",
    ),
    "bogus dtype": (
        lambda s: edit(meta(s), lambda d: d.update(data_type="float99")),
        f"val/{KEY}: its dtype 'float99' is not one of float16, float32",
    ),
    "truncated zarr.json": (lambda s: meta(s).write_text(meta(s).read_text()[:100]), f"val/{KEY}: the metadata of val/{KEY}"),
    "truncated split zarr.json": (lambda s: (s / "val" / "zarr.json").write_text('{\n  "attri'), "split val: its metadata cannot be read"),
    "chunk size 0": (
        lambda s: edit(meta(s), lambda d: d["chunk_grid"]["configuration"].update(chunk_shape=[0, 64, 2, 2])),
        f"val/{KEY}: its chunk shape [0, 64, 2, 2] is not 4 sizes ≥ 1",
    ),
}


@pytest.fixture(autouse=True)
def bounded_memory():
    """Every command below runs within 4 GiB of address space more than the test started with: a
    list of 10^12 units, or a 7 TiB array, is a MemoryError, never a swapping machine. (Not where
    CUDA is: its driver reserves address space by the terabyte.)"""
    import torch

    if torch.cuda.is_available():
        yield
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    used = int(open("/proc/self/statm").read().split()[0]) * resource.getpagesize()
    resource.setrlimit(resource.RLIMIT_AS, (used + (4 << 30), hard))
    yield
    resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_metadata_is_found_refused_and_repaired(damage, tiny, tiny_store):
    make, finding = DAMAGE[damage]
    make(tiny)
    code, text = cli("store", "info", tiny)
    assert code == 0 and "INCOMPLETE" in text and f"damaged metadata: {finding}" in text, text
    code, text = cli("store", "verify", tiny)
    assert code == 1 and f"damaged metadata: {finding}" in text and "store is DAMAGED or unusable" in text, text
    code, text = cli("store", "verify", "--deep", tiny)
    assert code == 1 and f"damaged metadata: {finding}" in text, text
    code, text = cli("probe", "logistic", tiny, "--key", KEY)
    assert code == 1 and f"Error: the metadata of {tiny} is damaged (" in text and f"`diffprobe store repair {tiny}`" in text, text
    code, text = cli("-q", "store", "repair", tiny, "--no-progress")
    assert code == 0 and "rebuilt the metadata of " in text and "repaired: the metadata is rebuilt" in text, text
    assert_identical(tiny, tiny_store)
    code, text = cli("store", "verify", tiny)
    assert code == 0, text


def test_what_repair_cannot_rebuild_it_says_plainly(tiny, tmp_path):
    np.save(tmp_path / "ext.npy", np.arange(20 * 3, dtype=np.float32).reshape(20, 3))
    code, text = cli("store", "import", tmp_path / "ext.npy", "--into", tiny, "--name", "ext", "--split", "val")
    assert code == 0, text
    meta(tiny, "ext").write_text("{")
    code, text = cli("-q", "store", "repair", tiny, "--no-progress")
    assert code == 1, text
    assert (
        "cannot repair: val/ext: an imported or side array's metadata cannot be rebuilt from the store's records; import it again" in text
    )
    assert "the store is still damaged" in text, text
    code, text = cli("store", "import", tmp_path / "ext.npy", "--into", tiny, "--name", "ext", "--split", "val", "--overwrite")
    assert code == 0, text
    code, text = cli("store", "verify", "--deep", tiny)
    assert code == 0, text
    with diffprobe.open_store(tiny) as s:
        assert s.read("val", "ext").shape == (20, 3)
