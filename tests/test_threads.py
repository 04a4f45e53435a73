"""The CLI's CPU policy: passive OpenMP waits, a thread per available idle core, overridable, never
overriding the environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from diffprobe.threads import ThreadPolicy, available_cores

CODE = """
import json, os, sys
from click.testing import CliRunner
from diffprobe.cli import main
r = CliRunner().invoke(main, sys.argv[1:] + ["models"])
assert r.exit_code == 0, r.output
print(json.dumps({k: os.environ.get(k) for k in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "GOMP_SPINCOUNT", "DIFFPROBE_CORES")}))
"""


def cli_env(*args: str, **env: str) -> dict:
    base = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "GOMP_SPINCOUNT", "KMP_BLOCKTIME", "DIFFPROBE_CORES")}
    out = subprocess.run([sys.executable, "-c", CODE, *args], env={**base, **env}, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_every_command_runs_passive_with_a_thread_per_available_core():
    got = cli_env("--threads", "3")
    assert got == {"OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": "3", "GOMP_SPINCOUNT": "0", "DIFFPROBE_CORES": "3"}
    auto = cli_env()
    assert auto["OMP_WAIT_POLICY"] == "PASSIVE" and 1 <= int(auto["OMP_NUM_THREADS"]) <= available_cores()
    assert auto["DIFFPROBE_CORES"] == str(available_cores())  # streams use every available core, busy or idle
    assert cli_env("--busy-wait", "--threads", "2")["OMP_WAIT_POLICY"] is None  # OpenMP's own default: spin


def test_the_environment_wins():
    got = cli_env("--threads", "3", OMP_NUM_THREADS="1", OMP_WAIT_POLICY="ACTIVE")
    assert got["OMP_NUM_THREADS"] == "1" and got["DIFFPROBE_CORES"] == "1"  # a user's one thread: one stream too
    assert cli_env(OMP_WAIT_POLICY="ACTIVE")["OMP_WAIT_POLICY"] == "ACTIVE"


def test_cores_come_from_the_affinity_mask_and_idle_ones_are_used(monkeypatch):
    import diffprobe.threads as threads

    for var in ("OMP_NUM_THREADS", threads.CORES_VAR):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    assert available_cores() == 4
    monkeypatch.setattr(threads, "idle_cores", lambda sample=0.1: 1.1)  # another process keeps three cores busy
    assert ThreadPolicy.default() == ThreadPolicy(1, cores=4)  # one thread per pool, four independent streams
    monkeypatch.setattr(threads, "idle_cores", lambda sample=0.1: None)  # no /proc/stat: every available core
    assert ThreadPolicy.default() == ThreadPolicy(4, cores=4)
    assert ThreadPolicy.default(2, busy_wait=True).environment() == {"OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2", "OPENBLAS_NUM_THREADS": "2",
                                                                     "DIFFPROBE_CORES": "2"}
    with pytest.raises(ValueError, match="expected --threads ≥ 1"):
        ThreadPolicy.default(0)


def test_streams_follow_the_cores_a_process_may_use(monkeypatch):
    import diffprobe.threads as threads

    for var in ("OMP_NUM_THREADS", threads.CORES_VAR):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)))
    assert threads.cpu_cores() == 16 and threads.streams() == threads.MAX_STREAMS  # each stream holds a forward: capped
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # a user's one thread
    assert threads.cpu_cores() == 1 and threads.streams() == 1
    monkeypatch.setenv(threads.CORES_VAR, "2")  # what the CLI resolved wins
    assert threads.streams() == 2
    monkeypatch.setenv(threads.CORES_VAR, "nonsense")
    assert threads.cpu_cores() == 1
