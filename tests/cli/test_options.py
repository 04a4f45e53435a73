"""One vocabulary: every command that takes a concept spells it the same way, with the same type and
default, matching the Python API's names (the CLI consistency test walks every command, the
lazily built probe subcommands included)."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from diffprobe.cli import main
from diffprobe.commands.options import VOCABULARY
from tests.probes.support import real_store


def commands(group: click.Group = main, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], click.Command]:
    """Every command of the CLI by its path, lazily built subcommands included."""
    ctx = click.Context(group)
    out: dict[tuple[str, ...], click.Command] = {}
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        assert cmd is not None, (*prefix, name)
        if isinstance(cmd, click.Group):
            out.update(commands(cmd, (*prefix, name)))
        else:
            out[(*prefix, name)] = cmd
    return out


#: parameter name → (its flags, in order; its default) on every command that has it
SHARED = {**{k: (v, None) for k, v in VOCABULARY.items()}, "device": (VOCABULARY["device"], "auto"),
          "max_memory": (("--max-memory",), None), "train_split": (("--train-split",), None), "eval_split": (("--eval-split",), None),
          "holdout": (("--holdout",), 0.2), "overwrite": (("--overwrite",), False), "dry_run": (("--dry-run",), False),
          "as_json": (("--json",), False), "params": (("-p", "--param"), ()), "model": (("--model", "-m"), None)}  # fmt: skip


@pytest.mark.parametrize("path", sorted(commands()), ids=" ".join)
def test_every_command_speaks_the_shared_vocabulary(path):
    cmd = commands()[path]
    for p in cmd.params:
        if isinstance(p, click.Option) and p.name in SHARED:
            flags, default = SHARED[p.name]
            assert tuple(p.opts) == flags, (path, p.name, p.opts)
            if default is not None and not p.is_flag and not p.multiple:
                assert p.default == default, (path, p.name, p.default)
    names = [p.name for p in cmd.params]
    assert len(names) == len(set(names)), (path, names)
    assert CliRunner().invoke(main, [*path, "--help"]).exit_code == 0


def test_the_vocabulary_matches_the_python_api():
    import inspect

    from diffprobe.extract.config import ExtractConfig
    from diffprobe.store.select import KeySelection

    assert {"timesteps", "blocks", "pools", "device"} <= set(inspect.signature(ExtractConfig).parameters)
    assert {"t", "blocks", "pools"} <= set(inspect.signature(KeySelection).parameters)
    assert set(VOCABULARY) == {"timesteps", "blocks", "pools", "device"}


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
    for blocks in (("--blocks", "13"), ("--blocks", "output_blocks.2"), ("--block", "13"), ("--blocks", "middle,13"), ("--timesteps", "90")):
        code, text = run(*base, *blocks)
        if blocks[0] == "--timesteps":  # accepted as --t's other name: the selection then lacks a block
            assert code == 1 and "expected a block (the store has several" in text
            continue
        assert code == 0, text
        keys = ["t0090_b10_p2", "t0090_b13_p2"] if "middle" in blocks[1] else ["t0090_b13_p2"]
        assert f'"keys": [\n  "{keys[0]}"' in text and all(k in text for k in keys)
    code, text = run(*base, "--blocks", "decoder.4")
    assert code == 1 and "unknown block 'decoder.4': give a block number 1..19 or a module path" in text
    assert "13 (output_blocks.2)" in text


def test_memory_limit_is_a_size_everywhere():
    store = real_store()
    code, text = run("probe", "logistic", store, "--t", "90", "--blocks", "13", "--pool", "2", "--max-memory", "1MiB", "--dry-run")
    assert code == 0 and '"max_memory": 1048576' in text
    code, text = run("probe", "logistic", store, "--max-memory", "lots")
    assert code == 2 and "expected a size like 2GiB" in text


@pytest.mark.parametrize("path", sorted(p for p, c in commands().items() if any(o.name == "device" for o in c.params)), ids=" ".join)
def test_every_command_with_long_work_takes_progress(path):
    """Every command that computes (it takes --device) shows bars on a terminal and takes --no-progress."""
    opts = {o.name: o for o in commands()[path].params if isinstance(o, click.Option)}
    assert "progress" in opts and tuple(opts["progress"].opts) == ("--progress",) and opts["progress"].secondary_opts == ["--no-progress"], path


def test_no_progress_silences_every_bar(monkeypatch):
    """--no-progress reaches the bars deep inside a job (here: the policy every bar reads)."""
    from diffprobe import progress

    seen = []
    monkeypatch.setattr(progress, "set_progress", lambda v: seen.append(v))
    r = CliRunner().invoke(main, ["cka", "blocks", "nowhere.zarr", "--no-progress"])
    assert seen == [False] and r.exit_code != 0  # the option is read before the missing store is refused
