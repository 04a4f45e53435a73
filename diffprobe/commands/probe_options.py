"""The options every probe-running command shares, declared once: which arrays (``--t``, ``--blocks``,
``--pools``, ``--key``), which items (splits, hold-out, folds, subsets), and the probe's own
hyper-parameters — one named option per parameter of its estimator, with its default in ``--help``,
``-p NAME=VALUE`` kept as an alias.

Each option's text is parsed once, here, into the typed values of a
:class:`~diffprobe.store.select.KeySelection` and a :class:`~diffprobe.probes.plan.DataConfig`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import click

from diffprobe.commands.options import (
    Decorator,
    blocks_option,
    device_option,
    dry_run_option,
    flatten,
    max_memory_option,
    pools_option,
    progress_option,
    stack_options,
    timesteps_option,
)
from diffprobe.keyvalue import format_value, parse_items, parse_pairs

#: Estimator parameters a run sets from the data or from shared options (never options of their own).
SET_BY_RUN = frozenset({"input_shape", "input_shapes", "input_times", "input_blocks", "feature_groups", "rows_per_item",
                        "standardize", "device", "max_memory"})  # fmt: skip


def selection_options(default: str) -> Decorator:
    """--t/--timesteps, --blocks/--block, --pools/--pool, --key/--keys: which arrays of the store;
    ``default`` says what an axis left out means for the command."""
    return lambda f: stack_options(f, [
        timesteps_option(f"Timesteps, e.g. 150 or 90,150 [default: {default}]."),
        blocks_option(f"Blocks: numbers, ranges or module paths, e.g. 24 or 19,24,30 [default: {default}]."),
        pools_option(f"Pool sizes or 'full', e.g. 2 [default: {default}]."),
        click.option("--key", "--keys", "keys", multiple=True,
                     help="Array names or shell patterns (imported arrays too), instead of or beside --t/--blocks/--pools."),
    ])  # fmt: skip


def selection_of(o: dict[str, Any]) -> Any:
    """The :class:`~diffprobe.store.select.KeySelection` of :func:`selection_options`' values."""
    from diffprobe.store.select import KeySelection

    return KeySelection(flatten(o.pop("timesteps")), flatten(o.pop("blocks")), flatten(o.pop("pools")), tuple(o.pop("keys")))


def split_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """--train-split, --eval-split, --holdout, --seed: which items train and which evaluate."""
    return stack_options(f, [
        click.option("--train-split", default=None, help="Split to train on [default: train, else the first split]."),
        click.option("--eval-split", default=None, help="Split to evaluate on [default: val/validation/test; else a hold-out of the train split]."),
        click.option("--holdout", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.2, show_default=True,
                     help="Held-out fraction when there is no eval split."),
        click.option("--seed", type=int, default=0, show_default=True, help="Seed of the hold-out, folds and fractions."),
        allow_incomplete_option(),
    ])  # fmt: skip


def allow_incomplete_option() -> Decorator:
    """``--allow-incomplete``: read a split whose extraction is not finished (only its finished items)."""
    return click.option("--allow-incomplete", is_flag=True,
                        help="Read a store whose extraction is not finished (stopped, or still running): only its finished "
                             "items; the results record complete: false [default: such a store is an error].")  # fmt: skip


def data_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """:func:`split_options` and the rest of a :class:`~diffprobe.probes.plan.DataConfig`: folds, subsets, standardisation, streaming."""
    return stack_options(f, [
        split_options,
        click.option("--folds", type=click.IntRange(min=2), default=None, help="k-fold cross-validation within the train split."),
        click.option("--train-subset", type=click.Path(dir_okay=False, exists=True), default=None,
                     help="File listing the training items to use (ids, paths or file names; e.g. ImageNet 1%)."),
        click.option("--train-fraction", type=click.FloatRange(0, 1, min_open=True), default=None,
                     help="Stratified fraction of the training items."),
        click.option("--standardize/--no-standardize", default=True, show_default=True, help="Standardise with train statistics."),
        click.option("--stream", is_flag=True, help="Stream features from disk in chunks [default: only when over --max-memory]."),
        max_memory_option("4GiB", "Features larger than this stay on disk and are streamed."),
    ])  # fmt: skip


def data_config(o: dict[str, Any]) -> Any:
    """The DataConfig of :func:`data_options` (or :func:`split_options`) values, taken out of ``o``."""
    from diffprobe.probes.plan import DataConfig

    kw = {k: o.pop(k) for k in ("train_split", "eval_split", "holdout", "seed")}
    for k in ("folds", "train_subset", "train_fraction", "standardize", "max_memory", "allow_incomplete"):
        if k in o:
            kw[k] = o.pop(k)
    if "stream" in o:
        kw["lazy"] = True if o.pop("stream") else None
    return DataConfig(**kw)


#: What the training parameters every head shares mean (their docstrings point to TrainConfig).
COMMON_HELP = {
    "optimizer": "sgd or adamw", "lr": "learning rate (several, comma-separated: one head each where the probe says so)",
    "momentum": "SGD momentum", "weight_decay": "weight decay", "epochs": "passes over the training rows",
    "batch_size": "rows per step", "schedule": "step (×0.1 each quarter), cosine, poly or constant",
    "amp": "bfloat16 autocast on CUDA", "random_state": "seed of the initialisation and shuffling",
    "chunk_size": "rows read at once when streaming", "num_threads": "CPU threads (none: automatic)",
}  # fmt: skip


def _first_line(doc: str, name: str) -> str:
    """The text a docstring's ``Args:`` section gives ``name`` (first sentence; the shared meaning for
    the common training parameters), or ""."""
    if name in COMMON_HELP:
        return COMMON_HELP[name]
    for line in (doc or "").splitlines():
        head, _, text = line.strip().partition(":")
        if name in [h.strip() for h in head.split(",")] and text.strip() and ":class:" not in text:
            return text.strip().split(". ")[0].rstrip(".")
    return ""


def hyper_options(cls: type[Any], skip: frozenset[str] = frozenset()) -> Decorator:
    """One ``--name`` option per hyper-parameter of estimator ``cls`` (its ``__init__``), each showing
    its default, plus ``-p NAME=VALUE`` (repeatable). A comma makes a list (``--lr 0.01,0.1``: several
    learning rates, as the probe defines it)."""
    params = [p for p in list(inspect.signature(cls.__init__).parameters.values())[1:] if p.name not in SET_BY_RUN | skip]
    opts = []
    for p in params:
        text = _first_line(cls.__doc__ or "", p.name)
        opts.append(click.option(f"--{p.name.replace('_', '-')}", f"hp_{p.name}", default=None, metavar="VALUE",
                                 help=f"{text + ' ' if text else ''}[default: {format_value(p.default)}]"))  # fmt: skip
    opts.append(click.option("-p", "--param", "params", multiple=True, metavar="NAME=VALUE",
                             help="Any hyper-parameter as NAME=VALUE, repeatable (the named options above are the same)."))  # fmt: skip
    return lambda f: stack_options(f, opts)


def hyper_params(o: dict[str, Any]) -> dict[str, Any]:
    """The hyper-parameters given (named options and ``-p``), typed once; taken out of ``o``."""
    out = parse_items(o.pop("params", ()))
    for name in [k for k in o if k.startswith("hp_")]:
        value = o.pop(name)
        if value is not None:
            out.update(parse_pairs(f"{name[3:]}={value}", what=f"--{name[3:].replace('_', '-')}"))
    return out


def run_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """--device (auto everywhere), --dry-run and --progress/--no-progress."""
    return stack_options(f, [device_option(), dry_run_option(), progress_option(expose=False)])
