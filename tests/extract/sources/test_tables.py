"""Hugging Face datasets on disk (save_to_disk folders, Parquet files): the same features as a
folder of the same images with the same ids; ids from a column or the row index; clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

pytest.importorskip("datasets", reason="the optional extra is not installed: pip install 'diffprobe[datasets]'")

import diffprobe  # noqa: E402
from diffprobe.cli import main  # noqa: E402
from diffprobe.errors import DataError  # noqa: E402
from diffprobe.extract.sources.discover import discover  # noqa: E402
from diffprobe.extract.sources.options import DataOptions  # noqa: E402
from tests.extract.sources import build  # noqa: E402
from tests.extract.sources.test_tars import KW, by_id  # noqa: E402
from tests.helpers import extract_config  # noqa: E402


@pytest.fixture(scope="module")
def tables(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hf")
    splits = {"train": build.images("train", 1), "val": build.images("val", 1)}
    dd = build.hf_dataset(splits)
    dd.save_to_disk(str(root / "saved"))
    (root / "pq").mkdir()
    for split, ds in dd.items():
        ds.to_parquet(str(root / "pq" / f"fm-{split}-00000.parquet"))
    return {"saved": root / "saved", "pq": root / "pq", "manifest": build.write_manifest(root / "same.csv", splits)}


def test_saved_datasets_and_parquet_give_the_bytes_of_a_folder(tables, tmp_path):
    ref = tmp_path / "ref.zarr"
    diffprobe.extract_features(extract_config(tables["manifest"], ref, **KW), progress=False)
    want = by_id(ref)
    for name, data in (("saved", tables["saved"]), ("pq", str(tables["pq"] / "fm-*.parquet"))):
        out = tmp_path / f"{name}.zarr"
        s = diffprobe.extract_features(extract_config(data, out, id_column="key", **KW), progress=False)
        assert s.items == 20 and not s.failures, name
        got = by_id(out)
        assert got.keys() == want.keys() and all(np.array_equal(got[k], v) for k, v in want.items()), name


def test_ids_default_to_the_row_index_and_the_choice_is_recorded(tables, tmp_path):
    spec = discover(tables["saved"])
    assert [it.id for it in spec.splits["val"][:2]] == ["row-00000000", "row-00000001"] and spec.source["ids"] == "row index"
    assert spec.class_names == [str(i) for i in range(10)] and spec.splits["val"][3].label == 3
    out = tmp_path / "s.zarr"
    r = CliRunner().invoke(main, ["-q", "extract", str(tables["pq"]), "--model", "adm-32-fmnist", "--t", "50", "--blocks", "4",
                                  "--id-column", "key", "--splits", "val", "--loader-workers", "0", "--out", str(out), "--no-progress"])  # fmt: skip
    assert r.exit_code == 0, r.output
    with diffprobe.open_store(out) as s:
        assert s.config["id_column"] == "key" and str(s.ids("val")[0]) == build.images("val", 1)[0][0]


def test_clear_errors_for_columns_and_hub_names(tables):
    with pytest.raises(DataError, match=r"has no column\(s\) \['picture'\].*--image-column"):
        discover(tables["saved"], options=DataOptions(image_column="picture"))
    with pytest.raises(DataError, match="hf download someone/fmnist --repo-type dataset"):
        discover("someone/fmnist")


def test_threads_share_parquet_row_groups_and_get_their_own_rows(tmp_path, monkeypatch):
    """A dask worker decodes a batch on a thread pool: every thread gets its row's image, and a row
    group is read once for all of them, not once per thread."""
    from concurrent.futures import ThreadPoolExecutor

    import pyarrow as pa
    import pyarrow.parquet as pq

    from diffprobe.extract.sources import files as read
    from diffprobe.extract.sources.kinds import open_item

    rng = np.random.default_rng(0)
    blobs = [rng.bytes(int(rng.integers(500, 5_000))) for _ in range(60)]
    path = tmp_path / "fm-train-00000.parquet"
    pq.write_table(pa.table({"image": [{"bytes": b, "path": None} for b in blobs], "label": [i % 3 for i in range(60)]}),
                   path, row_group_size=20)  # fmt: skip
    items = discover(str(path)).splits["train"]
    reads: list[int] = []
    real = pq.ParquetFile.read_row_group
    monkeypatch.setattr(pq.ParquetFile, "read_row_group", lambda self, g, *a, **k: reads.append(g) or real(self, g, *a, **k))
    monkeypatch.setattr(read, "_SHARED", type(read._SHARED)())  # nothing cached from other tests

    def rows(lo: int) -> list[bool]:
        return [open_item(it).read() == blobs[it.offset] for it in items[lo : lo + 20]]  # type: ignore[union-attr]

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(rows, [0, 0, 0, 20, 20, 20, 40, 40]))
    assert all(all(r) for r in results) and sorted(reads) == [0, 1, 2]
