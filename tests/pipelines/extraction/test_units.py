"""How a new split is cut into work units: short on a CPU (an interrupt loses little), never so many that
the shard files exceed the store's budget, and the same in every process of a run."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch

from diffprobe.pipelines.extraction.plan import make_plan
from diffprobe.pipelines.extraction.prepare import MAX_FILES, UNIT_SECONDS, unit_size_for
from diffprobe.store.layout import auto_unit_size
from diffprobe.store.progress import writer_threads
from diffprobe.store.zarr_backend import ZarrBackend
from tests.helpers import extract_config


def _plan(tmp_path, n: int, out: str = "s.zarr", **kw):
    return make_plan(extract_config(f"synthetic:{n}@32", tmp_path / out, **kw), torch.device("cpu"), cache_index=False)


def test_cpu_units_hold_about_unit_seconds_of_work(tmp_path):
    plan = _plan(tmp_path, 20_000, blocks=tuple(range(1, 20)), timesteps=(50,), pools=(1,))
    size = unit_size_for(plan, 20_000)
    assert size & (size - 1) == 0, "a power of two"
    seconds = size * plan.seconds_per_item()
    assert seconds <= UNIT_SECONDS or size == 16
    assert seconds > UNIT_SECONDS / 2 or size == auto_unit_size(plan.item_bytes(), 20_000)
    # 20,000 items in one or two units (what the memory budget alone allows) would lose minutes to a Ctrl-C
    assert math.ceil(20_000 / size) >= 8


def test_gpu_units_are_sized_by_memory_only(tmp_path):
    plan = dataclasses.replace(_plan(tmp_path, 20_000, timesteps=(50,)), device_type="cuda")
    assert unit_size_for(plan, 20_000) == auto_unit_size(plan.item_bytes(), 20_000)


def test_units_never_make_more_shard_files_than_the_budget(tmp_path):
    n = 1_281_167  # the split's size is an argument: the plan itself lists a small data set
    plan = _plan(tmp_path, 1000, blocks=tuple(range(1, 20)), timesteps=(10, 50, 100, 200, 300), pools=(1,))
    assert len(plan.keys) == 95
    size = unit_size_for(plan, n)
    assert math.ceil(n / size) * len(plan.keys) <= MAX_FILES * 1.01


def test_units_grow_for_few_files_only_within_the_shard_and_spill_bounds():
    from diffprobe.store.layout import MAX_SHARD_BYTES, MAX_SPILL_BYTES, few_files_unit_size

    n = 1_281_167
    size = few_files_unit_size(16, 100 << 17, 1 << 17, n, 104)  # 100 keys of 128 KiB: 26.8 GB units, spilled
    assert size == 2048 and math.ceil(n / size) * 104 < MAX_FILES
    # a key of 512 KiB: its shard would pass 256 MiB beyond 512 items
    assert few_files_unit_size(16, 100 << 19, 1 << 19, n, 104) * (1 << 19) == MAX_SHARD_BYTES
    # 1,000 keys of 64 KiB: a unit's rows (its temporary disk) stop at 32 GiB before the files do
    size = few_files_unit_size(16, 1000 << 16, 1 << 16, n, 1004)
    assert size * (1000 << 16) <= MAX_SPILL_BYTES < 2 * size * (1000 << 16)


def test_unit_size_does_not_depend_on_the_thread_count(tmp_path):
    plan = _plan(tmp_path, 20_000, timesteps=(50,))
    before = torch.get_num_threads()
    try:
        sizes = set()
        for threads in (1, 2):
            torch.set_num_threads(threads)
            sizes.add(unit_size_for(plan, 20_000))
    finally:
        torch.set_num_threads(before)
    assert len(sizes) == 1


def test_a_configured_unit_size_is_kept(tmp_path):
    assert unit_size_for(_plan(tmp_path, 20_000, unit_size=48), 20_000) == 48


def test_dry_run_memory_estimate_counts_the_real_weights(tmp_path):
    """The resident weights of the estimate are the loaded model's parameter bytes, exactly; the host's
    unit buffers are a unit of every key."""
    import diffprobe
    from diffprobe.extract.registry import load_backbone
    from diffprobe.pipelines.extraction.memory import estimate_memory
    from tests.helpers import FMNIST_CKPT

    plan = _plan(tmp_path, 1000, timesteps=(50,))
    mem = estimate_memory(plan, 256)
    net = load_backbone("adm-32-fmnist", FMNIST_CKPT, device="cpu").net
    assert mem.resident == {"unet": sum(t.numel() * t.element_size() for t in (*net.parameters(), *net.buffers()))}
    assert mem.unit_buffers == 256 * plan.item_bytes() and mem.transient == {} and mem.spill == 0
    # the writer's units on top of the one being filled: 2 waiting and one per writer thread
    assert mem.units == 1 + 2 + writer_threads(ZarrBackend) and f"{mem.units} × " in mem.lines()[0]
    assert mem.device_peak == mem.resident["unet"] + mem.activations
    summary = diffprobe.extract_features(plan.config, dry_run=True)
    assert any(line.startswith("  peak memory (estimate): device ") for line in summary.lines())


def test_the_memory_estimate_counts_every_forward_a_cpu_runs_at_once(tmp_path, monkeypatch):
    from diffprobe.pipelines.extraction.memory import estimate_memory
    from diffprobe.threads import CORES_VAR

    plan = _plan(tmp_path, 1000, timesteps=(50,))
    monkeypatch.setenv(CORES_VAR, "1")
    one = estimate_memory(plan, 256)
    monkeypatch.setenv(CORES_VAR, "2")
    two = estimate_memory(plan, 256)
    assert (one.forwards, two.forwards) == (1, 2) and two.activations == 2 * one.activations
    assert "(2 forwards at once)" in two.lines()[0]
    gpu = estimate_memory(dataclasses.replace(plan, device_type="cuda"), 256)
    assert gpu.forwards == 1 and gpu.activations == one.activations


def test_dry_run_estimate_of_a_unit_held_in_pieces_counts_a_piece_of_memory_and_the_rest_on_disk(tmp_path):
    from diffprobe.pipelines.extraction.memory import estimate_memory
    from diffprobe.store.layout import MAX_UNIT_BYTES

    plan = _plan(tmp_path, 1000, timesteps=(50,), pools=(None,))
    unit = 1 << ((3 << 30) // plan.item_bytes()).bit_length()  # a power of two of items over 3 GiB
    mem = estimate_memory(plan, unit)
    assert mem.unit_buffers <= MAX_UNIT_BYTES < 2 * mem.unit_buffers
    assert mem.unit_buffers + mem.spill == unit * plan.item_bytes()
    assert any("of temporary disk per unit" in line and f"for {mem.units} units at once" in line for line in mem.lines())
    assert estimate_memory(plan, 16).spill == 0
    h5 = _plan(tmp_path, 1000, timesteps=(50,), pools=(None,), out="s.h5")
    assert estimate_memory(h5, unit).spill == 0  # HDF5 writes its pieces in place: no temporary disk


def test_the_estimate_counts_the_units_held_at_once_on_one_machine(tmp_path):
    """A run in this process holds the unit being filled, the writer's waiting units and one per writer
    thread (HDF5: one thread); a dask worker holds one unit at a time (it writes it before the next)."""
    from diffprobe.pipelines.extraction.memory import estimate_memory

    assert estimate_memory(_plan(tmp_path, 1000, timesteps=(50,), out="s.h5"), 16).units == 1 + 2 + 1
    three = estimate_memory(_plan(tmp_path, 1000, timesteps=(50,), workers=3), 16)
    assert three.units == 3 and "(one per dask worker, 3 workers)" in three.lines()[0]
    remote = estimate_memory(_plan(tmp_path, 1000, timesteps=(50,), scheduler="tcp://10.0.0.1:8786"), 16)
    assert remote.units == 1 and "per dask worker" in remote.lines()[0]


def test_units_over_the_buffer_budget_extract_in_pieces_to_the_same_store(tmp_path, monkeypatch):
    """A unit whose buffers would exceed MAX_UNIT_BYTES (grown for few files) is filled and written a
    piece at a time: the arrays and every marker's digests and row prints are those of whole units."""
    import diffprobe
    import diffprobe.store.progress as progress
    from tests.helpers import read_all

    cfg = dict(model="adm-8-scale", checkpoint=None, random_weights=True, timesteps=(90,), blocks=(5,), pools=(1, None), unit_size=64)
    diffprobe.extract_features(extract_config("synthetic:150@8/3", tmp_path / "whole.zarr", **cfg), progress=False)
    monkeypatch.setattr(progress, "MAX_UNIT_BYTES", 20 * 64 * (1 + 16) * 2)  # 20 rows of both keys: pieces of 16
    held = []
    real = progress.UnitBuffer._write_piece
    monkeypatch.setattr(progress.UnitBuffer, "_write_piece", lambda self, *args: (held.append(self.rows), real(self, *args))[1])
    diffprobe.extract_features(extract_config("synthetic:150@8/3", tmp_path / "pieces.zarr", **cfg), progress=False)
    assert set(held) == {16} and len(held) == 4 + 4 + 2, "units of 64, 64 and 22 rows in pieces of 16 (the last by write_unit)"
    whole, pieces = read_all(tmp_path / "whole.zarr"), read_all(tmp_path / "pieces.zarr")
    assert whole.keys() == pieces.keys() and all(np.array_equal(whole[k], pieces[k], equal_nan=True) for k in whole)
    with diffprobe.open_store(tmp_path / "whole.zarr") as a, diffprobe.open_store(tmp_path / "pieces.zarr") as b:
        ma, mb = a.markers("train"), b.markers("train")
        assert len(ma) == 3 and [(m["digests"], m["prints"]) for m in ma.values()] == [(m["digests"], m["prints"]) for m in mb.values()]


def test_a_run_stopped_inside_a_unit_held_in_pieces_leaves_no_spill_and_resumes_to_the_same_store(tmp_path, monkeypatch):
    """The pieces a unit puts aside (Zarr: in a spill file beside its marker) are removed when the run
    stops part-way; the rerun redoes that unit, and the store equals an undisturbed run's."""
    import itertools

    import pytest

    import diffprobe
    import diffprobe.store.progress as progress
    from diffprobe.extract.compute import FeatureComputer
    from diffprobe.store.spill import SPILL_SUFFIX
    from tests.helpers import read_all

    cfg = dict(model="adm-8-scale", checkpoint=None, random_weights=True, timesteps=(90,), blocks=(5,), pools=(1, None),
               unit_size=64, forward_batch=8)  # fmt: skip
    diffprobe.extract_features(extract_config("synthetic:150@8/3", tmp_path / "whole.zarr", **cfg), progress=False)
    monkeypatch.setattr(progress, "MAX_UNIT_BYTES", 20 * 64 * (1 + 16) * 2)  # pieces of 16 rows
    launch, calls, seen = FeatureComputer.launch, itertools.count(1), []

    def failing(self, *args, **kw):
        n = next(calls)  # (two forward streams call this at once)
        seen.append(len(list((tmp_path / "s.zarr").rglob(f"*{SPILL_SUFFIX}"))))
        if n == 8 + 5:  # unit 0's 8 forwards done; unit 1 has put two pieces aside
            raise RuntimeError("a forward failed")
        return launch(self, *args, **kw)

    monkeypatch.setattr(FeatureComputer, "launch", failing)
    with pytest.raises(RuntimeError, match="a forward failed"):
        diffprobe.extract_features(extract_config("synthetic:150@8/3", tmp_path / "s.zarr", **cfg), progress=False)
    assert max(seen) >= 1, "the pieces were put aside in a spill file"
    assert list((tmp_path / "s.zarr").rglob(f"*{SPILL_SUFFIX}")) == [], "the stopped unit's spill is gone"
    monkeypatch.setattr(FeatureComputer, "launch", launch)
    summary = diffprobe.extract_features(extract_config("synthetic:150@8/3", tmp_path / "s.zarr", **cfg), progress=False)
    assert summary.units_skipped >= 1 and list((tmp_path / "s.zarr").rglob(f"*{SPILL_SUFFIX}")) == []
    whole, got = read_all(tmp_path / "whole.zarr"), read_all(tmp_path / "s.zarr")
    assert whole.keys() == got.keys() and all(np.array_equal(whole[k], got[k], equal_nan=True) for k in whole)
