"""Data lost: nothing but a diffprobe store (or an empty folder) is ever deleted or replaced.

`extract … --out DIR --overwrite`, DIR holding the user's manifest, masks and notes, deleted all of
it; the refusal before it had itself suggested --overwrite.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.pipelines.extraction.test_faults import assert_identical
from tests.reliability.conftest import KEY, beside, cli, tiny_args


def users_folder(path: Path) -> dict[str, bytes]:
    """A folder of the user's own things: a manifest, a masks/ folder and notes."""
    path.mkdir()
    (path / "manifest.csv").write_text("path,label\na.png,cat\n")
    (path / "masks").mkdir()
    (path / "masks" / "a.png").write_bytes(b"\x89PNG not really")
    (path / "notes.txt").write_text("do not lose me")
    return snapshot(path)


def snapshot(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def users_h5(path: Path) -> dict[str, bytes]:
    """An HDF5 file of the user's that is not a store."""
    import h5py

    with h5py.File(path, "w") as f:
        f["x"] = [1, 2, 3]
    return {path.name: path.read_bytes()}


@pytest.mark.parametrize("how", ["extract --overwrite", "extract", "extract .h5 --overwrite", "export --overwrite", "demo"])
def test_what_is_not_a_store_is_never_deleted(how, tiny_store, tiny_manifest, tmp_path):
    target = tmp_path / ("data.h5" if ".h5" in how else "mine")
    before = users_h5(target) if ".h5" in how else users_folder(target)
    if how.startswith("extract"):
        code, text = cli(*tiny_args(tiny_manifest, target, *(["--overwrite"] if "--overwrite" in how else [])))
    elif how.startswith("export"):
        code, text = cli("store", "export", tiny_store, target, "--overwrite")
    else:
        code, text = cli("demo", "--out", target, "--no-progress")
    assert code == 1, text
    if ".h5" in how:
        assert f"{target} is a file of" in text and "not a diffprobe store" in text, text
    elif how == "demo":
        assert f"{target} is a folder holding 3 entries (manifest.csv, masks/, notes.txt), not a demo folder" in text, text
    else:
        assert f"{target} is a folder holding 3 entries (manifest.csv, masks/, notes.txt), not a diffprobe store" in text, text
        assert "nothing was deleted" in text, text
    assert "pass --overwrite" not in text and "--overwrite replaces" not in text  # never suggested for what is not a store
    after = snapshot(target) if target.is_dir() else {target.name: target.read_bytes()}
    assert after == before  # every byte of it is still there


def test_an_empty_folder_is_used_and_the_rerun_is_the_undisturbed_run(tiny_store, tiny_manifest, tmp_path):
    """After the refusal, the run into a new (here: empty) folder is the undisturbed run; --overwrite of
    a store is tests/pipelines/extraction/test_extraction.py's."""
    empty = tmp_path / "empty"
    empty.mkdir()
    code, text = cli(*tiny_args(tiny_manifest, empty))  # an empty folder is not an earlier output
    assert code == 0, text
    assert_identical(empty, tiny_store)
    assert beside(empty) == []  # no lock or temporary left


def test_outputs_overwrite_only_their_own_files(tiny_store, tmp_path):
    """claim_output never deletes: --overwrite on a sweep folder rewrites the sweep's files and leaves the user's."""
    out = tmp_path / "sweep"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    code, text = cli("sweep", tiny_store, "--key", KEY, "--out", out)
    assert code == 1 and "already exists" in text, text
    code, text = cli("sweep", tiny_store, "--key", KEY, "--out", out, "--overwrite")
    assert code == 0, text
    assert (out / "notes.txt").read_text() == "mine" and (out / "results.csv").is_file()
