"""One concept, one option: the same name and type in every command; old spellings only as hidden aliases."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from diffprobe.cli import main
from tests.probes.support import real_store


def commands(group: click.Group = main, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], click.Command]:
    out: dict[tuple[str, ...], click.Command] = {}
    for name, cmd in group.commands.items():
        if isinstance(cmd, click.Group):
            out.update(commands(cmd, (*prefix, name)))
        else:
            out[(*prefix, name)] = cmd
    return out


CONCEPTS = {"timesteps": "--t", "blocks": "--blocks", "pools": "--pool", "max_memory": "--max-memory", "device": "--device"}
OLD_SPELLINGS = ("--timesteps", "--block", "--pools", "--max-memory-gb")


@pytest.mark.parametrize("path", sorted(commands()), ids=" ".join)
def test_same_concept_same_option(path):
    cmd = commands()[path]
    for p in cmd.params:
        if isinstance(p, click.Option) and p.name in CONCEPTS:
            assert p.opts[0] == CONCEPTS[p.name], (path, p.opts)
    shown = CliRunner().invoke(main, [*path, "--help"]).output
    for old in OLD_SPELLINGS:
        assert f"{old} " not in shown, (path, old)


def test_list_options_share_one_type():
    kinds = {}
    for cmd in commands().values():
        for p in cmd.params:
            if p.name in ("timesteps", "blocks", "pools"):
                kinds.setdefault(p.name, set()).add(getattr(p.type, "kind", type(p.type).__name__))
    assert kinds == {"timesteps": {"int"}, "blocks": {"block"}, "pools": {"pool"}}


def run(*args):
    r = CliRunner().invoke(main, [str(a) for a in args])
    return r.exit_code, r.output


def test_probe_takes_module_paths_and_hidden_aliases():
    store = real_store()
    base = ("probe", "logistic", store, "--t", "90", "--pool", "2", "--dry-run")
    for blocks in (("--blocks", "13"), ("--blocks", "output_blocks.2"), ("--block", "13"), ("--blocks", "middle,13")):
        code, text = run(*base, *blocks)
        assert code == 0, text
        keys = ["t0090_b10_p2", "t0090_b13_p2"] if "middle" in blocks[1] else ["t0090_b13_p2"]
        assert f'"keys": [\n  "{keys[0]}"' in text and all(k in text for k in keys)
    code, text = run(*base, "--blocks", "decoder.4")
    assert code == 1 and "expected a block number or a stored block's module path, got 'decoder.4'" in text
    assert "output_blocks.2 (13)" in text


def test_memory_limit_is_a_size_everywhere():
    store = real_store()
    code, text = run("probe", "logistic", store, "--t", "90", "--blocks", "13", "--pool", "2", "--max-memory", "1MiB", "--dry-run")
    assert code == 0 and '"max_memory": 1048576' in text
    code, text = run("probe", "logistic", store, "--max-memory", "lots")
    assert code == 2 and "expected a size like 2GiB" in text
