"""Options shared by the commands: one parameter type and one decorator per concept, so that the
same concept has the same name, type and help everywhere (``--t``, ``--blocks``, ``--pool``,
``--device``, ``--max-memory``, …).

Only click and light diffprobe modules are imported here: ``diffprobe --help`` must stay instant.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import click

from diffprobe.errors import ConfigError
from diffprobe.sizes import parse_size
from diffprobe.store.layout import parse_pool

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


class CommaList(click.ParamType):
    """``90,150``, ``1-19`` or ``11-19:2`` (a range with a step); repeatable option values are concatenated.

    ``kind``: ``int``; ``block`` (paper numbers, ranges, or module paths such as output_blocks.4);
    ``pool`` (sizes or ``full``); ``str``.
    """

    name = "list"
    _RANGE = re.compile(r"^(\d+)-(\d+)(?::(\d+))?$")

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> tuple:
        if isinstance(value, tuple):
            return value
        out: list[Any] = []
        for tok in (t.strip() for t in str(value).split(",")):
            if not tok:
                continue
            m = self._RANGE.match(tok) if self.kind in ("int", "block") else None
            if m:
                lo, hi, step = int(m[1]), int(m[2]), int(m[3] or 1)
                if lo > hi or step < 1:
                    self.fail(f"empty range {tok!r}", param, ctx)
                out.extend(range(lo, hi + 1, step))
            elif self.kind == "int" or (self.kind == "block" and tok.isdigit()):
                try:
                    out.append(int(tok))
                except ValueError:
                    self.fail(f"expected integers and ranges like 90,150 or 1-19 or 11-19:2, got {tok!r}", param, ctx)
            elif self.kind == "pool":
                try:
                    out.append(parse_pool(tok))
                except ConfigError as e:
                    self.fail(str(e), param, ctx)
            else:
                out.append(tok)
        if not out:
            self.fail("expected at least one value", param, ctx)
        return tuple(out)


class Size(click.ParamType):
    """A byte size: ``2GiB``, ``512MB``, ``1.5G`` or a number of bytes."""

    name = "size"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        try:
            return parse_size(value)
        except ConfigError as e:
            self.fail(str(e), param, ctx)


def flatten(values: tuple[tuple, ...]) -> tuple:
    """Merge the tuples of a ``multiple=True`` CommaList option."""
    return tuple(v for group in values for v in group)


def one(values: tuple, flag: str) -> Any:
    """The single value of a list option (None when not given); more than one is a usage error."""
    if len(values) > 1:
        raise click.BadParameter(f"expected one value here, got {', '.join(map(str, values))}", param_hint=flag)
    return values[0] if values else None


def claim_outputs(outputs: dict[str, str | None], overwrite: bool) -> None:
    """Refuse existing outputs (option → path) before any work, so that a refusal costs nothing."""
    from diffprobe.outputs import claim_output

    for option, path in outputs.items():
        if path:
            claim_output(path, overwrite=overwrite, option=option)


def stack_options(f: Callable[..., Any], options: Sequence[Decorator]) -> Callable[..., Any]:
    """Apply click option decorators to ``f`` so that they list in the given order in --help."""
    for opt in reversed(options):
        f = opt(f)
    return f


#: The shared vocabulary: every command that takes one of these spells it so, matching the Python
#: API's names (``timesteps``, ``blocks``, ``pools``); a test walks every command and checks it.
VOCABULARY = {"timesteps": ("--t", "--timesteps"), "blocks": ("--blocks", "--block"), "pools": ("--pools", "--pool"),
              "device": ("--device",)}  # fmt: skip


def _list_option(dest: str, kind: str, help: str, **kw: Any) -> Decorator:
    return click.option(*VOCABULARY[dest], dest, type=CommaList(kind), multiple=True, help=help, **kw)


def timesteps_option(help: str = "Timesteps t, e.g. 90,150.", **kw: Any) -> Decorator:
    """``--t``/``--timesteps``: diffusion timesteps (a comma list or ranges); the parameter is ``timesteps``."""
    return _list_option("timesteps", "int", help, **kw)


def blocks_option(help: str = "Blocks: paper numbers, ranges or module paths, e.g. 19,24 or 1-10.", **kw: Any) -> Decorator:
    """``--blocks``/``--block``: paper block numbers, ranges or module paths; the parameter is ``blocks``."""
    return _list_option("blocks", "block", help, **kw)


def pools_option(help: str = "Pool sizes p (p×p) or 'full' (the native map).", **kw: Any) -> Decorator:
    """``--pools``/``--pool``: pool sizes or ``full``; the parameter is ``pools``."""
    return _list_option("pools", "pool", help, **kw)


def device_option(help: str = "auto (CUDA if present), cpu, cuda or cuda:K.") -> Decorator:
    """``--device``, default ``auto`` on every command."""
    return click.option(*VOCABULARY["device"], default="auto", show_default=True, help=help)


def max_memory_option(default: str, help: str) -> Decorator:
    return click.option("--max-memory", type=Size(), default=default, show_default=True, help=help)


def overwrite_option(what: str = "the output") -> Decorator:
    """``--overwrite``: allow replacing an existing output (otherwise it is refused, never replaced silently)."""
    return click.option("--overwrite", is_flag=True, help=f"Replace {what} if it exists (otherwise an existing one is refused).")


def dry_run_option(help: str = "Print the resolved configuration and stop; write nothing.") -> Decorator:
    return click.option("--dry-run", is_flag=True, help=help)


def _set_progress(ctx: click.Context, param: click.Parameter, value: bool | None) -> bool | None:
    from diffprobe.progress import set_progress

    set_progress(value)
    return value


def progress_option(expose: bool = True) -> Decorator:
    """``--progress/--no-progress``: progress bars for the whole run (default: only on a terminal)."""
    return click.option("--progress/--no-progress", default=None, callback=_set_progress, expose_value=expose,
                        help="Progress bars (default: only on a terminal).")  # fmt: skip


def prompt_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """--prompt and --prompt-embedding, for text-conditioned models (Stable Diffusion)."""
    return stack_options(f, [
        click.option("--prompt", default=None, help="Text-conditioned models: the prompt for every image [default: the empty prompt, unconditional]."),
        click.option("--prompt-embedding", type=click.Path(exists=True, dir_okay=False), default=None,
                     help="Text-conditioned models without a text encoder: a .pt/.npy file with the prompt's (L, D) embedding."),
    ])  # fmt: skip


def json_option(help: str = "Print JSON.") -> Decorator:
    return click.option("--json", "as_json", is_flag=True, help=help)


def model_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """--checkpoint, --flags and --class-label, shared by every command that builds a model."""
    return stack_options(f, [
        click.option("--checkpoint", type=click.Path(), default=None,
                     help="ADM: a state-dict file (.pt); diffusers: the model's directory; timm: a .safetensors/.pth file or the hub folder [default: the preset's bundled checkpoint, if it has one]."),
        click.option("--flags", "flags", default="",
                     help="Model flags, 'k=v,k=v' or a .toml/.json file. ADM: guided-diffusion flags overriding the preset "
                          "('image_size=64,channel_mult=1,2,2'); diffusers: image_size=N."),
        click.option("--class-label", type=click.IntRange(min=0), default=None,
                     help="Class fed to a class-conditional model for every image (never the true labels)."),
    ])  # fmt: skip
