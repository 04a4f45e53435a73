"""Run the documentation's shell examples, page by page, in document order (see :mod:`.examples`).

Each page runs in its own temporary folder laid out like the root of a checkout: ``diffprobe/assets``
there is the package's bundled data (a link), so ``diffprobe extract diffprobe/assets/fmnist-small.csv
…`` works as written, and later examples of a page read what earlier ones wrote. ``diffprobe …`` runs
through click's CliRunner in this process; ``python …`` runs in a subprocess of this interpreter, with
the checkout on PYTHONPATH (``python -m tests.…`` works as it does from the checkout's root).
Blocks marked ``<!-- example: not run (why) -->`` are reported as skipped, one per block, with the why.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import traceback
from pathlib import Path

import pytest
from click.testing import CliRunner

from diffprobe.cli import main
from tests.docs.examples import PAGES, ROOT, Block, Command, all_blocks, blocks_of, parsed

BLOCKS = all_blocks()
#: pages with at least one example to run
RUN_PAGES = [p for p in PAGES if any(b.not_run is None for b in blocks_of(p))]
NOT_RUN = [b for b in BLOCKS if b.not_run is not None]


def checkout_like(folder: Path) -> Path:
    """``folder`` with ``diffprobe/assets`` linked to the package's bundled data, as in a checkout."""
    (folder / "diffprobe").mkdir()
    (folder / "diffprobe" / "assets").symlink_to(ROOT / "diffprobe" / "assets", target_is_directory=True)
    return folder


def run(cmd: Command, cwd: Path, where: str) -> float:
    """Run one command in ``cwd``; fail the test with its output when it fails. Returns its seconds."""
    start = time.perf_counter()
    if cmd.argv[0] == "diffprobe":
        res = CliRunner().invoke(main, list(cmd.argv[1:]))
        if res.exit_code != 0:
            tb = "".join(traceback.format_exception(*res.exc_info)) if res.exc_info and res.exception and not isinstance(res.exception, SystemExit) else ""
            pytest.fail(f"{where}: `{cmd.text}` exited with {res.exit_code}\n{res.output[-4000:]}\n{tb[-4000:]}", pytrace=False)
    else:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
        res = subprocess.run([sys.executable, *cmd.argv[1:]], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
        if res.returncode != 0:
            pytest.fail(f"{where}: `{cmd.text}` exited with {res.returncode}\n{(res.stdout + res.stderr)[-4000:]}", pytrace=False)
    return time.perf_counter() - start


@pytest.mark.parametrize("page", RUN_PAGES, ids=[p.relative_to(ROOT).as_posix() for p in RUN_PAGES])
def test_page_examples_run_in_order(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, record_property) -> None:
    cwd = checkout_like(tmp_path)
    monkeypatch.chdir(cwd)
    timings = []
    for block in blocks_of(page):
        if block.not_run is not None:
            continue
        for cmd in parsed(block):
            timings.append((round(run(cmd, cwd, f"{block.page}:{cmd.line}"), 2), cmd.text))
    record_property("timings", timings)


@pytest.mark.parametrize("block", NOT_RUN, ids=[b.where for b in NOT_RUN])
def test_block_not_run(block: Block) -> None:
    pytest.skip(f"{block.where}: example not run ({block.not_run})")


def test_every_run_block_is_a_plain_command() -> None:
    """Blocks that run hold only ``diffprobe``/``python`` lines, with no shell syntax (checked before anything runs)."""
    for block in BLOCKS:
        if block.not_run is None:
            parsed(block)


def test_the_manifest_of_the_examples_lists_the_bundled_images() -> None:
    import csv

    rows = list(csv.DictReader((ROOT / "diffprobe" / "assets" / "fmnist-small.csv").open()))
    assert {(r["split"]) for r in rows} == {"train", "val"} and len(rows) == 150
    assert all((ROOT / "diffprobe" / "assets" / r["path"]).is_file() for r in rows)
