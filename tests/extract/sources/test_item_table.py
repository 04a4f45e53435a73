"""ItemTable: a split's items by column behave as the list of Items they replace, in ~25 bytes per item."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from diffprobe.extract.sources.item import DataSpec, Item
from diffprobe.extract.sources.item_table import MAX_CODED, ItemTable, StrColumn
from diffprobe.extract.sources.synthetic import Synthetic, synthetic_items


def _items(n: int) -> list[Item]:
    return [Item(f"cls{i % 3}/img_{i:05d}_é.png", f"/data/cls{i % 3}/img_{i:05d}_é.png", -1 if i == 7 else i % 3, kind="tar" if i % 2 else "file",
                 offset=i * 512, size=100 + i, member=f"m{i}" if i % 5 else "", mask="" if i % 4 else f"masks/{i}.png")
            for i in range(n)]  # fmt: skip


def test_a_table_reads_back_every_item_of_the_list():
    items = _items(300)
    table = ItemTable.of(items)
    assert len(table) == 300 and list(table) == items and table == items
    assert table[7] == items[7] and table[-1] == items[-1] and table[7].label == -1
    assert list(table[10:20]) == items[10:20] and isinstance(table[10:20], ItemTable) and len(table[295:400]) == 5
    assert table.has_masks() and not ItemTable.of([Item("a", "a", 0)]).has_masks()
    with pytest.raises(IndexError):
        table[300]


def test_the_fingerprint_is_the_one_of_the_list():
    items = _items(1000)
    listed = DataSpec(["a", "b", "c"], {"train": items}).fingerprint("train")
    assert DataSpec(["a", "b", "c"], {"train": ItemTable.of(items)}).fingerprint("train") == listed


def test_strings_are_utf8_bytes_or_codes():
    many = StrColumn.of([f"ü{i}" for i in range(MAX_CODED + 1)])
    few = StrColumn.of(["x", "yy", "x"] * 1000)
    assert many[MAX_CODED] == f"ü{MAX_CODED}" and many.strings(0, 2).tolist() == ["ü0", "ü1"]
    assert few[1] == "yy" and few.strings().tolist() == ["x", "yy", "x"] * 1000
    assert few._codes is not None and few._codes.dtype == np.int8  # three thousand values, two distinct: one byte each


def test_a_unit_of_a_large_split_pickles_as_its_rows_alone():
    """dask ships a unit's items to a worker: the slice carries its rows, not the split's."""
    table = synthetic_items(Synthetic.parse("synthetic:200000@8/10")).splits["train"]
    unit = pickle.loads(pickle.dumps(table[4096:8192]))
    assert len(pickle.dumps(table[4096:8192])) < 200_000 and list(unit) == list(table[4096:8192])


def test_imagenets_item_count_takes_megabytes_not_hundreds():
    spec = synthetic_items(Synthetic.parse("synthetic:1281167,50000@8/10"))
    train = spec.splits["train"]
    nbytes = train.nbytes
    assert nbytes < 30 * 1_281_167, nbytes  # ~25 bytes per item; Item objects took ~200
    assert train[1_281_166].id == "train/01281166" and train[1_281_166].label == 1_281_166 % 10
