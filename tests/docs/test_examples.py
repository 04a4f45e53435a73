"""Run the documentation's shell examples, page by page, in document order (see :mod:`.examples`).

Each page runs in its own temporary folder laid out like the root of a checkout: ``diffprobe/assets``
there is the package's bundled data (a link), so ``diffprobe extract diffprobe/assets/fmnist-small.csv
…`` works as written, and later examples of a page read what earlier ones wrote. ``diffprobe …`` runs
through click's CliRunner in this process; ``python …`` runs in a subprocess of this interpreter, with
the checkout on PYTHONPATH (``python -m tests.…`` works as it does from the checkout's root, and the
folder's ``diffprobe/``, which holds only the link, cannot stand in for the package). Blocks marked
``<!-- example: not run (why) -->`` are reported as skipped, one per block, with the why.

The examples use the 150 images of ``diffprobe/assets/fmnist-small.csv`` and small settings, one
extraction per page (the models page adds the tiny ViT it compares the U-Net with; the scaling-out
page runs its extraction as two shards), so that the whole file runs in
about a minute on 2 idle cores (the budget: 90 s); each command's seconds are recorded as the test's
``timings`` property (``--junitxml``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import traceback
from collections.abc import Iterator
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
            tb = (
                "".join(traceback.format_exception(*res.exc_info))
                if res.exc_info and res.exception and not isinstance(res.exception, SystemExit)
                else ""
            )
            pytest.fail(f"{where}: `{cmd.text}` exited with {res.exit_code}\n{res.output[-4000:]}\n{tb[-4000:]}", pytrace=False)
    else:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
        res = subprocess.run([sys.executable, *cmd.argv[1:]], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
        if res.returncode != 0:
            pytest.fail(f"{where}: `{cmd.text}` exited with {res.returncode}\n{(res.stdout + res.stderr)[-4000:]}", pytrace=False)
    return time.perf_counter() - start


@pytest.fixture
def cli_threads() -> Iterator[None]:
    """The intra-op thread count a ``diffprobe`` process would choose (one per idle core: the CLI's
    thread policy), for the in-process commands; torch started its pool before the CLI could set it."""
    import torch

    from diffprobe.threads import ThreadPolicy

    before = torch.get_num_threads()
    torch.set_num_threads(ThreadPolicy.default().threads)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("page", RUN_PAGES, ids=[p.relative_to(ROOT).as_posix() for p in RUN_PAGES])
def test_page_examples_run_in_order(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, record_property, cli_threads) -> None:
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


@pytest.mark.parametrize(
    "line",
    [
        "diffprobe store info a.zarr | head",  # a pipe
        "diffprobe extract x > log.txt",  # a redirect
        "diffprobe models && diffprobe blocks adm",  # two commands
        "diffprobe extract --shard ${I}/2",  # a variable
        "diffprobe probe logistic s.zarr --key t0090_*",  # an unquoted pattern
    ],
)
def test_shell_syntax_in_a_run_block_is_refused(line: str) -> None:
    from tests.docs.examples import split_command

    with pytest.raises(ValueError):
        split_command(line, "page.md:1")


def test_plain_commands_split_as_a_shell_would() -> None:
    from tests.docs.examples import split_command

    assert split_command("diffprobe probe logistic s.zarr --key 't0090_*_p1'   # a comment", "page.md:1") == (
        "diffprobe",
        "probe",
        "logistic",
        "s.zarr",
        "--key",
        "t0090_*_p1",
    )
    assert split_command("diffprobe store show s.zarr '#0' --split val", "page.md:1")[4] == "#0"
