"""Issue 12, item 5 (the cka and sweep part): an output folder is never replaced silently.

`cka blocks … --pool 2` used to replace an earlier 19×19 `cka-blocks/` with a 2×2 one, and
`sweep --out sweep` an earlier sweep. Now an existing non-empty output is refused, before anything
is computed (dry runs included), with a hint to pass --overwrite; `diffprobe demo` keeps reusing its
own folder by design.
"""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from diffprobe.cli import main
from diffprobe.errors import OutputExistsError


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def refused(r, path) -> bool:
    return r.exit_code == 1 and f"{path} already exists; pass --overwrite to replace it, or choose another --out" in r.output


def test_cka_refuses_an_existing_output_folder(small_store, tmp_path):
    out = tmp_path / "cka-blocks"
    r = invoke("cka", "blocks", small_store, "--split", "val", "--t", "150", "--pool", "1", "--out", out)
    assert r.exit_code == 0, r.output
    first = (out / "cka.csv").read_text()
    r = invoke("cka", "blocks", small_store, "--split", "val", "--t", "150", "--pool", "2", "--out", out)
    assert refused(r, out) and "Traceback" not in r.output
    assert (out / "cka.csv").read_text() == first  # untouched
    r = invoke("cka", "blocks", small_store, "--split", "val", "--t", "150", "--pool", "2", "--out", out, "--dry-run")
    assert refused(r, out)  # the dry run says what the real run would do
    r = invoke("cka", "blocks", small_store, "--split", "val", "--t", "150", "--pool", "2", "--out", out, "--overwrite")
    assert r.exit_code == 0, r.output
    assert '"pool": 2' in (out / "cka.json").read_text()


@pytest.mark.parametrize("command", [["blocks", "--t", "150"], ["timesteps", "--block", "13"]])
def test_cka_default_output_is_refused_too(small_store, tmp_path, monkeypatch, command):
    """The default --out (./cka-<command>) follows the same rule; the check comes before any computation."""
    monkeypatch.chdir(tmp_path)
    default = tmp_path / f"cka-{command[0]}"
    default.mkdir()
    (default / "notes.txt").write_text("mine")
    import diffprobe.pipelines.cka.analyses as analyses

    monkeypatch.setattr(analyses, f"cka_{command[0]}", lambda *a, **k: pytest.fail("computed before the output was checked"))
    r = invoke("cka", command[0], small_store, "--split", "val", *command[1:])
    assert refused(r, f"cka-{command[0]}")
    assert [p.name for p in default.iterdir()] == ["notes.txt"]
    empty = tmp_path / "empty"
    empty.mkdir()  # an empty folder is not an earlier output
    r = invoke("cka", command[0], small_store, "--split", "val", *command[1:], "--out", empty, "--dry-run")
    assert r.exit_code == 0 and '"out":' in r.output


def test_sweep_refuses_an_existing_output_folder(small_store, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["sweep", small_store, "--t", "150", "--blocks", "13", "-p", "C=0.1"]
    r = invoke(*args)  # default --out: ./sweep
    assert r.exit_code == 0, r.output
    table = (tmp_path / "sweep" / "results.csv").read_text()
    import diffprobe.pipelines.sweep.run as run

    monkeypatch.setattr(run, "run_key", lambda *a, **k: pytest.fail("fitted before the output was checked"))
    r = invoke(*args[:3], "50", *args[4:])
    assert refused(r, "sweep") and (tmp_path / "sweep" / "results.csv").read_text() == table
    r = invoke(*args, "--dry-run")
    assert refused(r, "sweep")
    monkeypatch.undo()
    monkeypatch.chdir(tmp_path)
    r = invoke(*args[:3], "50", *args[4:], "--overwrite")
    assert r.exit_code == 0, r.output
    assert "t0050_b13" in (tmp_path / "sweep" / "results.csv").read_text()


def test_library_writers_refuse_unless_overwrite(small_store, tmp_path):
    from diffprobe.pipelines.cka.analyses import cka_blocks
    from diffprobe.pipelines.cka.outputs import write_outputs
    from diffprobe.pipelines.sweep.run import SweepConfig, run_sweep, write_sweep
    from diffprobe.store import KeySelection, open_store

    result = cka_blocks(small_store, split="val", t=150, pool=1)
    write_outputs(result, tmp_path / "c")
    with pytest.raises(OutputExistsError, match="pass --overwrite"):
        write_outputs(result, tmp_path / "c")
    assert write_outputs(result, tmp_path / "c", overwrite=True)["csv"].exists()
    cfg = SweepConfig(selection=KeySelection((150,), (13,), (1,)), params={"C": 0.1})
    with open_store(small_store) as s:
        res = run_sweep(s, cfg, tmp_path / "s")
        with pytest.raises(OutputExistsError):
            run_sweep(s, cfg, tmp_path / "s")
        with pytest.raises(OutputExistsError):
            write_sweep(res, cfg, tmp_path / "s")
        assert run_sweep(s, cfg, tmp_path / "s", overwrite=True).files["table"].endswith("results.csv")
