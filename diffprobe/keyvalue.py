"""``name=value`` text, parsed one way everywhere: model flags (``--flags``), probe hyper-parameters
(``-p``/``--param``) and anything else a user writes as pairs.

The one comma rule: a comma starts a new pair when the text after it (up to the next comma) holds
an ``=``; otherwise it adds another value to the current pair, whose value becomes a tuple. So
``image_size=64,channel_mult=1,2,2`` is ``{"image_size": 64, "channel_mult": (1, 2, 2)}`` and
``lr=0.01,0.1`` is ``{"lr": (0.01, 0.1)}`` — what a tuple *means* (an architecture's list, a
probe's grid of values to search) is up to the consumer, never to the parser.

Each value is typed by :func:`scalar`: JSON numbers, ``true``/``false`` (any case), ``none``/``null``
→ None, anything else stays text. Files (``.toml``/``.json``) hold the same pairs as a table.
This module imports nothing heavy (the CLI uses it before torch is loaded).
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from diffprobe.errors import ConfigError

_WORDS = {"true": True, "false": False, "none": None, "null": None}


def scalar(text: Any) -> Any:
    """One value as written: ``"64"`` → 64, ``"1e-2"`` → 0.01, ``"True"`` → True, ``"none"`` → None,
    ``"adamw"`` → "adamw". Non-text values are returned unchanged."""
    if not isinstance(text, str):
        return text
    s = text.strip()
    if s.lower() in _WORDS:
        return _WORDS[s.lower()]
    try:
        value = json.loads(s)
    except json.JSONDecodeError:
        return s
    return value if isinstance(value, (int, float, str)) and not isinstance(value, bool) else s


def typed(value: Any) -> Any:
    """A value with :func:`scalar` applied to it, or to each item of a list or tuple (giving a tuple)."""
    if isinstance(value, (list, tuple)):
        return tuple(typed(v) for v in value)
    return scalar(value)


def parse_pairs(text: str, *, what: str = "pairs") -> dict[str, Any]:
    """``"a=1,b=2,3"`` → ``{"a": 1, "b": (2, 3)}`` (the module's comma rule); ``""`` → ``{}``.

    guided-diffusion's own ``--name value`` form (``--image_size 64 --learn_sigma True``) is
    accepted too.

    Raises:
        ConfigError: a part that is not ``name=value``, or an empty name.
    """
    text = text.strip()
    if not text:
        return {}
    if text.startswith("--"):
        return _dashed(text, what)
    raw: dict[str, list[str]] = {}
    last: str | None = None
    for part in text.split(","):
        tok = part.strip()
        if "=" in tok:
            name, value = tok.split("=", 1)
            name = name.strip().lstrip("-")
            if not name:
                raise ConfigError(f"expected {what} as name=value, got an empty name in {text!r}")
            raw[name] = [value.strip()]
            last = name
        elif last is not None and tok:
            raw[last].append(tok)
        elif tok:
            raise ConfigError(f"expected {what} as name=value[,name=value…], got {tok!r} in {text!r}")
    return {k: scalar(v[0]) if len(v) == 1 else tuple(scalar(x) for x in v) for k, v in raw.items()}


def _dashed(text: str, what: str) -> dict[str, Any]:
    toks = text.split()
    if len(toks) % 2 or not all(t.startswith("--") for t in toks[::2]):
        raise ConfigError(f"cannot parse {what} {text!r}; expected '--name value' pairs")
    return {name[2:]: parse_pairs(f"x={value}")["x"] for name, value in zip(toks[::2], toks[1::2])}


def parse_items(items: Iterable[str], *, what: str = "--param NAME=VALUE") -> dict[str, Any]:
    """Repeated options (``-p lr=0.01,0.1 -p optimizer=adamw``) merged into one dict; a later item
    overrides an earlier one."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"expected {what}, got {item!r}")
        out.update(parse_pairs(item, what=what))
    return out


def load_pairs(spec: str | Path | Mapping[str, Any] | None, *, what: str = "flags") -> dict[str, Any]:
    """Pairs from ``name=value,…`` text, a ``.toml``/``.json`` file of them, or a mapping (typed as text is).

    Raises:
        ConfigError: a missing or unreadable file, or text that is not pairs.
    """
    if spec is None:
        return {}
    if isinstance(spec, Mapping):
        return {str(k): typed(v) for k, v in spec.items()}
    s = str(spec)
    if not s.endswith((".toml", ".json")):
        return parse_pairs(s, what=what)
    path = Path(s).expanduser()
    if not path.is_file():
        raise ConfigError(f"{what} file not found: {path}")
    try:
        data = tomllib.loads(path.read_text()) if s.endswith(".toml") else json.loads(path.read_text())
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot parse {what} file {path}: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{what} file {path} must hold a table/object of name = value")
    return {str(k): typed(v) if not isinstance(v, (dict, bool)) else v for k, v in data.items()}


def format_value(value: Any) -> str:
    """A value as :func:`parse_pairs` reads it back: tuples comma-joined, None as ``none``."""
    if isinstance(value, (list, tuple)):
        return ",".join(format_value(v) for v in value)
    if value is None:
        return "none"
    return str(value)
