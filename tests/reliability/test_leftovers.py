"""Leftovers: every temporary a run makes is gone when it ends, however it ends; a killed run's are
removed by the next run on the store (with a log line); no lock file outlives a run.

`.NAME.creating-PID` (the disk filled while creating) and `.NAME.PID.tmp.h5` (killed while
publishing: see test_crashes.py) survived later successful runs, and `.X.writer` and
`.X.partial.zarr.lock` were left after successful runs.
"""

from __future__ import annotations

import errno

from diffprobe.store.store import FeatureStore
from tests.pipelines.extraction.test_faults import assert_identical
from tests.reliability.conftest import beside, cli, tiny_args


def test_a_full_disk_while_creating_leaves_nothing_and_the_rerun_is_the_undisturbed_run(tiny_store, tiny_manifest, tmp_path, monkeypatch):
    out = tmp_path / "s.zarr"

    def full(self, *a, **k):
        raise OSError(errno.ENOSPC, "No space left on device", str(self.path))

    with monkeypatch.context() as m:
        m.setattr(FeatureStore, "create_feature_array", full)
        code, text = cli(*tiny_args(tiny_manifest, out))
    assert code == 1 and f"Error: writing {out} failed: No space left on device" in text and "the disk is full" in text, text
    assert not out.exists() and beside(out) == []  # the half-built store and the locks are gone
    stale = tmp_path / f".{out.name}.creating-4242"  # what a run killed (SIGKILL) while creating leaves
    (stale / "train").mkdir(parents=True)
    code, text = cli(*tiny_args(tiny_manifest, out))
    assert code == 0 and f"removing {stale}: a temporary left by a run that was stopped" in text, text
    assert beside(out) == []
    assert_identical(out, tiny_store)


def test_a_half_written_marker_of_a_killed_run_is_removed_by_the_next(tiny, tiny_store, tiny_manifest):
    tmp = tiny / "_progress" / "val" / ".unit-000001.4242.tmp"
    tmp.write_text('{"keys": [')  # killed between writing a marker and renaming it into place
    code, text = cli(*tiny_args(tiny_manifest, tiny))
    assert code == 0 and "units: 0 run, 6 already done" in text and f"removing {tmp}" in text, text
    assert not tmp.exists() and beside(tiny) == []
    assert_identical(tiny, tiny_store)


def test_the_spilled_pieces_of_a_killed_runs_unit_are_removed_by_the_next(tiny, tiny_store, tiny_manifest):
    spill = tiny / "_progress" / "train" / ".unit-000000.k1ll3d.spill"
    spill.write_bytes(b"\0" * 4096)  # killed while a unit too large for memory was filled a piece at a time
    code, text = cli(*tiny_args(tiny_manifest, tiny))
    assert code == 0 and f"removing {spill}" in text, text
    assert not spill.exists() and beside(tiny) == []
    assert_identical(tiny, tiny_store)
