"""Silently wrong results: a chunk swapped for another valid chunk of the same array is caught when read.

Its crc32c passes (it is a whole, valid chunk), and a probe used to score 15% instead of 95% with
exit 0. Every reader now checks each unit it reads against the row print its done marker records.
"""

from __future__ import annotations

import pytest

from tests.pipelines.extraction.test_faults import assert_identical, chunk
from tests.reliability.conftest import KEY, cli


def swap(store, split: str, array: str) -> None:
    """Unit 1's chunk of ``array`` replaced by unit 0's: a valid chunk, in the wrong place."""
    chunk(store, split, array, 1).write_bytes(chunk(store, split, array, 0).read_bytes())


READERS = {  # each reads the damaged split first: the lazy (streamed) reads of the train split, the others val
    "probe": ("val", lambda s, tmp: cli("probe", "logistic", s, "--key", KEY)),
    "probe, streamed": ("train", lambda s, tmp: cli("probe", "logistic", s, "--key", KEY, "--stream")),
    "cka": ("val", lambda s, tmp: cli("cka", "stores", s, s, "--split", "val", "--keys-a", KEY, "--keys-b", KEY, "--out", tmp / "cka")),
}


@pytest.mark.parametrize(("reader", "array"), [*((r, KEY) for r in READERS), ("probe", "label")])  # CKA reads no labels
def test_a_swapped_chunk_is_an_error_and_repair_restores_the_store(reader, array, tiny, tiny_store, tmp_path):
    split, run = READERS[reader]
    swap(tiny, split, array)
    code, text = run(tiny, tmp_path)
    assert code == 1, text
    where = "unit 1 (items 8–15) does not hold the rows written there" if array != "label" else "the item table differs"
    assert f"{split}/{array} of {tiny}: {where}" in text, text
    assert f"`diffprobe store verify --deep {tiny}`" in text and f"`diffprobe store repair {tiny}`" in text, text
    if reader != "probe" or array != KEY:
        return  # the repair is the same for every reader
    code, text = cli("-q", "store", "repair", tiny, "--no-progress")
    assert code == 0 and f"recomputed {split}: 1 unit(s) (1)" in text, text
    assert_identical(tiny, tiny_store)
    code, text = cli("probe", "logistic", tiny, "--key", KEY)
    assert code == 0, text
