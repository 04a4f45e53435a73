"""WebDataset tar shards: the same features as a folder of the same images with the same ids, the
index cached beside the store, resume and shards byte-identical, and bad data handled clearly."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import diffprobe
from diffprobe.cli import main
from diffprobe.errors import DataError
from diffprobe.extract.sources import tars
from diffprobe.extract.sources.discover import discover
from diffprobe.extract.sources.files import expand_braces
from tests.extract.sources import build
from tests.helpers import extract_config

KW = dict(timesteps=(50,), blocks=(4, 10), pools=(1,), unit_size=8, dtype="float32")


def by_id(store: Path) -> dict[tuple[str, str, str], np.ndarray]:
    with diffprobe.open_store(store) as s:
        return {(sp, k, str(i)): row for sp in s.splits for k in s.keys(sp) for i, row in zip(s.ids(sp), s.read(sp, k))}


@pytest.fixture(scope="module")
def layout(tmp_path_factory) -> dict[str, Path | str]:
    root = tmp_path_factory.mktemp("wds")
    train, val = build.images("train", 2), build.images("val", 1)
    build.write_shards(root / "shards", "fm-train", train, per_shard=7)  # 20 images: 3 shards (7, 7, 6)
    build.write_shards(root / "shards", "fm-val", val, per_shard=10)
    return {"pattern": str(root / "shards" / "fm-train-{000000..000002}.tar") + "::" + str(root / "shards" / "fm-val-000000.tar"),
            "dir": root / "shards", "manifest": build.write_manifest(root / "same.csv", {"train": train, "val": val})}  # fmt: skip


@pytest.fixture(scope="module")
def folder_store(layout, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ref") / "folder.zarr"
    diffprobe.extract_features(extract_config(layout["manifest"], out, **KW), progress=False)
    return out


def test_braces_expand_like_webdataset():
    assert expand_braces("a-{000..002}.tar") == ["a-000.tar", "a-001.tar", "a-002.tar"]
    assert expand_braces("{x,y}-{8..10}") == ["x-8", "x-9", "x-10", "y-8", "y-9", "y-10"]


def test_tars_give_the_bytes_of_a_folder_of_the_same_images(layout, folder_store, tmp_path):
    out = tmp_path / "tars.zarr"
    s = diffprobe.extract_features(extract_config(layout["pattern"], out, **KW), progress=False)
    assert s.items == 30 and not s.failures
    index = tmp_path / "tars.zarr.tar-index.json"
    assert set(json.loads(index.read_text())["tars"]) == {str(p) for p in sorted(Path(layout["dir"]).glob("*.tar"))}
    got, want = by_id(out), by_id(folder_store)
    assert got.keys() == want.keys() and len(got) == 2 * 30
    for k, v in want.items():
        assert np.array_equal(got[k], v), k
    with diffprobe.open_store(out) as st, diffprobe.open_store(folder_store) as ref:
        assert [str(i) for i in st.ids("train")][:2] == [k for k, _, _ in build.images("train", 2)[:2]]  # ids are the keys
        assert st.class_names == ref.class_names and list(st.labels("val")) == list(ref.labels("val"))


def test_the_index_is_reused_and_resume_shards_and_a_folder_of_tars_agree(layout, tmp_path, monkeypatch):
    out = tmp_path / "a.zarr"
    dry = diffprobe.extract_features(extract_config(layout["pattern"], out, **KW), dry_run=True)
    assert dry.dry_run and not out.exists() and not (tmp_path / "a.zarr.tar-index.json").exists()  # a dry run writes nothing
    diffprobe.extract_features(extract_config(layout["pattern"], out, **KW), progress=False)

    def no_scan(*a, **k):
        raise AssertionError("the cached index should be used")

    monkeypatch.setattr(tars, "scan", no_scan)
    again = diffprobe.extract_features(extract_config(layout["pattern"], out, **KW), progress=False)
    assert again.units_run == 0 and again.units_skipped > 0
    monkeypatch.undo()
    sharded = tmp_path / "b.zarr"
    for i in range(2):  # two static shards of the units, then finalize
        r = CliRunner().invoke(main, ["-q", "extract", str(layout["dir"]), "--model", "adm-32-fmnist", "--t", "50", "--blocks", "4,10",
                                      "--pool", "1", "--unit-size", "8", "--dtype", "float32", "--loader-workers", "0", "--device", "cpu",
                                      "--shard", f"{i}/2", "--out", str(sharded), "--no-progress"])  # fmt: skip
        assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["store", "finalize", str(sharded)])
    assert r.exit_code == 0, r.output
    got, want = by_id(sharded), by_id(out)
    assert got.keys() == want.keys() and all(np.array_equal(got[k], v) for k, v in want.items())


def test_labels_from_json_missing_labels_and_repeated_keys(tmp_path):
    rows = build.images("val", 1)
    build.write_shards(tmp_path / "j", "a", rows[:5], per_shard=5, label="json")
    build.write_shards(tmp_path / "j", "b", rows[:3] + rows[5:], per_shard=10, label="none")  # keys of a.tar again, no labels
    spec = discover(str(tmp_path / "j" / "*.tar"), options=None)
    items = spec.splits["train"]
    assert len(items) == 13 and spec.source["kind"] == "webdataset"
    ids = [it.id for it in items]
    assert ids[:3] == [f"a-000000/{k}" for k, _, _ in rows[:3]] and ids[5:8] == [f"b-000000/{k}" for k, _, _ in rows[:3]]
    assert ids[3] == rows[3][0]  # unique keys stay bare
    assert [it.label for it in items[:5]] == [lab for _, _, lab in rows[:5]] and {it.label for it in items[5:]} == {-1}


def test_a_corrupt_member_is_a_failed_item_and_a_truncated_tar_an_error(tmp_path):
    rows = build.images("val", 1)
    bad = tmp_path / "bad"
    build.write_shards(bad, "x", rows[:4], per_shard=4)
    with tarfile.open(bad / "x-000001.tar", "w", format=tarfile.USTAR_FORMAT) as tf:
        build.add(tf, "broken/img.png", b"\x89PNG\r\n\x1a\n not really a png")
        build.add(tf, "broken/img.cls", b"3")
    s = diffprobe.extract_features(extract_config(str(bad / "x-{000000..000001}.tar"), tmp_path / "b.zarr", **KW), progress=False)
    assert s.items == 5 and [i for _, i, _ in s.failures] == ["broken/img"]
    with diffprobe.open_store(tmp_path / "b.zarr") as st:
        assert list(st.valid("train")) == [True] * 4 + [False]
    cut = tmp_path / "cut"
    paths = build.write_shards(cut, "y", rows[:4], per_shard=4)
    data = paths[0].read_bytes()
    # members: png header at 0, data 512–1536; cls header 1536, data 2048; the second png's header 2560, data 3072
    for cut_at, says in ((3072 + 100, r"y-000000.tar is truncated: member '1_trouser/t10k_\d+.png' at byte 3072 needs \d+ bytes, "
                                      r"the file ends at byte 3172"),
                         (2560 + 100, r"y-000000.tar is truncated or corrupt at byte 2560")):  # fmt: skip
        paths[0].write_bytes(data[:cut_at])
        with pytest.raises(DataError, match=says):
            diffprobe.extract_features(extract_config(str(paths[0]), tmp_path / "c.zarr", **KW), progress=False)
        assert not (tmp_path / "c.zarr").exists()
    r = CliRunner().invoke(main, ["extract", "no/such-{000..003}.tar", "--model", "adm-32-fmnist", "--t", "5", "--blocks", "1",
                                  "--out", str(tmp_path / "d.zarr")])  # fmt: skip
    assert r.exit_code != 0 and "tar shard not found: no/such-000.tar" in r.output and "Traceback" not in r.output, r.output


def test_an_imagenet_style_subset_list_selects_tar_items(layout, folder_store, tmp_path):
    listed = [f"{k.split('/')[1]}.png" for k, _, _ in build.images("train", 1)]  # file names, as the 1%/10% lists give them
    (tmp_path / "subset.txt").write_text("\n".join(listed) + "\n")
    out = tmp_path / "t.zarr"
    diffprobe.extract_features(extract_config(layout["pattern"], out, **KW), progress=False)
    r = CliRunner().invoke(main, ["probe", "logistic", str(out), "--t", "50", "--block", "10", "--pool", "1",
                                  "--train-subset", str(tmp_path / "subset.txt")])  # fmt: skip
    assert r.exit_code == 0 and "train train (10)" in r.output, r.output


@pytest.mark.slow
def test_dask_workers_read_tars_to_the_same_bytes(layout, folder_store, tmp_path):
    out = tmp_path / "dask.zarr"
    diffprobe.extract_features(extract_config(layout["pattern"], out, workers=2, **KW), progress=False)
    got, want = by_id(out), by_id(folder_store)
    assert got.keys() == want.keys() and all(np.array_equal(got[k], v) for k, v in want.items())


def test_fsspec_urls_read_like_paths(layout, tmp_path):
    from diffprobe.extract.sources.decode import load_image
    from diffprobe.extract.sources.kinds import open_item

    local = discover(str(Path(layout["dir"]) / "fm-val-000000.tar")).splits["val"]
    remote = discover(f"file://{Path(layout['dir']) / 'fm-val-{000000..000000}.tar'}", index=tmp_path / "i.json").splits["val"]
    assert [it.id for it in remote] == [it.id for it in local] and remote[0].path.startswith("file://")
    assert np.array_equal(load_image(open_item(remote[3]), 32), load_image(open_item(local[3]), 32))


def test_threads_reading_one_tar_each_get_their_own_members(tmp_path):
    """A dask worker decodes a batch's items on a thread pool: each thread must get its member's bytes,
    not bytes from where another thread's seek left a shared file."""
    from concurrent.futures import ThreadPoolExecutor

    from diffprobe.extract.sources.kinds import open_item

    rng = np.random.default_rng(0)
    blobs = {f"k{i:03d}": rng.bytes(int(rng.integers(2_000, 40_000))) for i in range(48)}
    with tarfile.open(tmp_path / "mixed-000000.tar", "w", format=tarfile.USTAR_FORMAT) as tf:
        for key, data in blobs.items():
            build.add(tf, f"{key}.png", data)
    items = discover(str(tmp_path / "mixed-000000.tar"), index=tmp_path / "i.json").splits["train"]

    def read_all(shift: int) -> list[bool]:
        order = items[shift:] + items[:shift]
        return [open_item(it).read() == blobs[it.id] for _ in range(4) for it in order]  # type: ignore[union-attr]

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(read_all, range(0, 48, 6)))
    assert all(all(r) for r in results), [sum(not x for x in r) for r in results]


def _opened_in_child(path: str) -> bool:
    from diffprobe.extract.sources import files as read

    return any(key[1] == path for key in getattr(read._LOCAL, "open", {}))


def test_a_forked_loader_worker_opens_its_own_tar(layout):
    """A DataLoader worker forked after this process read a tar must not share its file offset."""
    import multiprocessing

    from diffprobe.extract.sources.kinds import open_item

    item = discover(str(Path(layout["dir"]) / "fm-val-000000.tar")).splits["val"][0]
    open_item(item)
    assert _opened_in_child(item.path)  # here, the handle is kept
    with multiprocessing.get_context("fork").Pool(1) as pool:
        assert pool.apply(_opened_in_child, (item.path,)) is False
