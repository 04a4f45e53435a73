"""ADM (guided-diffusion) architecture flags as a frozen dataclass, and their strict typing.

Flag names and defaults are those of guided-diffusion's ``model_and_diffusion_defaults`` so that a
user can paste the ``MODEL_FLAGS`` / ``DIFFUSION_FLAGS`` published with a checkpoint.  Values are
parsed strictly: ``"False"`` is false, an unknown flag or an unparsable value is an error. The text
of ``--flags`` is split into pairs by :mod:`diffprobe.keyvalue`, as every name=value text is.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from typing import Any, Mapping

from diffprobe.errors import ConfigError

#: Flags guided-diffusion accepts that do not change the network or the forward noising
#: (sampling-only or training-only). They are accepted so published flag lines paste unchanged.
IGNORED_FLAGS = frozenset(
    {
        "timestep_respacing",
        "use_kl",
        "predict_xstart",
        "rescale_learned_sigmas",
        "use_checkpoint",
        "rescale_timesteps",
    }
)

#: channel_mult implied by image_size when the flag is empty (guided-diffusion's rule).
DEFAULT_CHANNEL_MULT: dict[int, tuple[float, ...]] = {
    512: (0.5, 1, 1, 2, 2, 4, 4),
    256: (1, 1, 2, 2, 4, 4),
    128: (1, 1, 2, 3, 4),
    64: (1, 2, 3, 4),
}


@dataclass(frozen=True)
class ADMConfig:
    """The architecture and diffusion flags of one ADM checkpoint (guided-diffusion names)."""

    image_size: int = 64
    num_channels: int = 128
    num_res_blocks: int = 2
    channel_mult: tuple[float, ...] = ()
    attention_resolutions: tuple[int, ...] = (16, 8)
    num_heads: int = 4
    num_head_channels: int | None = None
    num_heads_upsample: int | None = None
    dropout: float = 0.0
    class_cond: bool = False
    num_classes: int = 1000
    learn_sigma: bool = False
    use_scale_shift_norm: bool = True
    resblock_updown: bool = False
    use_new_attention_order: bool = False
    use_fp16: bool = False
    in_channels: int = 3
    diffusion_steps: int = 1000
    noise_schedule: str = "linear"

    def __post_init__(self) -> None:
        if self.image_size <= 0 or self.num_channels <= 0 or self.num_res_blocks <= 0:
            raise ConfigError(
                "image_size, num_channels and num_res_blocks must be positive, got "
                f"{self.image_size}, {self.num_channels}, {self.num_res_blocks}"
            )
        if not self.channel_mult and self.image_size not in DEFAULT_CHANNEL_MULT:
            raise ConfigError(
                f"no default channel_mult for image_size={self.image_size}; pass channel_mult "
                f"explicitly (e.g. channel_mult=1,2,2); defaults exist for {sorted(DEFAULT_CHANNEL_MULT)}"
            )
        factor = 2 ** (len(self.mult) - 1)
        if self.image_size % factor:
            fits = " or ".join(str(n) for n in sorted({self.image_size // factor * factor, (self.image_size // factor + 1) * factor} - {0}))
            raise ConfigError(
                f"image_size={self.image_size} cannot go through {len(self.mult)} levels (channel_mult={','.join(f'{m:g}' for m in self.mult)}): "
                f"each level halves it, so it must be divisible by {factor}, or the decoder's upsampled maps do not match the "
                f"encoder's skips; use image_size {fits}, or fewer levels in channel_mult"
            )
        widths = sorted({int(m * self.num_channels) for m in self.mult})
        if any(w % 32 for w in widths):
            raise ConfigError(
                f"num_channels={self.num_channels} with channel_mult={','.join(f'{m:g}' for m in self.mult)} gives levels of "
                f"{', '.join(map(str, widths))} channels; ADM normalises with 32 groups, so every level needs a multiple of 32 "
                "channels: use num_channels=32, 64, … (or other multipliers)"
            )
        if self.noise_schedule not in ("linear", "cosine"):
            raise ConfigError(f"noise_schedule must be 'linear' or 'cosine', got {self.noise_schedule!r}")
        if self.num_head_channels is not None and self.num_head_channels <= 0:
            raise ConfigError(f"num_head_channels must be positive or unset, got {self.num_head_channels}")
        if self.diffusion_steps <= 0:
            raise ConfigError(f"diffusion_steps must be positive, got {self.diffusion_steps}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")

    @property
    def mult(self) -> tuple[float, ...]:
        """The channel multipliers actually used (explicit, or implied by ``image_size``)."""
        return self.channel_mult or DEFAULT_CHANNEL_MULT[self.image_size]

    @property
    def attention_ds(self) -> frozenset[int]:
        """Downsampling factors at which attention blocks are inserted."""
        return frozenset(self.image_size // r for r in self.attention_resolutions)

    @property
    def out_channels(self) -> int:
        return self.in_channels * (2 if self.learn_sigma else 1)

    def to_flags(self) -> dict[str, Any]:
        """JSON-friendly dict of every field (tuples become comma-separated strings)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            out[f.name] = ",".join(_fmt_num(x) for x in v) if isinstance(v, tuple) else v
        return out


def _fmt_num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no"}


def _parse_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    s = str(value).strip().lower()
    if s in _TRUE:
        return True
    if s in _FALSE:
        return False
    raise ConfigError(f"flag {name}: expected True or False, got {value!r}")


def _parse_tuple(name: str, value: Any, kind: type) -> tuple:
    if isinstance(value, (list, tuple)):
        items = list(value)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        items = [value]
    else:
        s = str(value).strip()
        items = [p for p in s.replace(" ", "").split(",") if p] if s else []
    try:
        return tuple(kind(float(x)) if kind is int and float(x).is_integer() else kind(x) for x in items)
    except (TypeError, ValueError):
        raise ConfigError(f"flag {name}: expected comma-separated numbers, got {value!r}") from None


def _parse_optional_int(name: str, value: Any) -> int | None:
    """guided-diffusion uses -1 for 'unset'; we map it to None."""
    if value is None:
        return None
    try:
        v = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"flag {name}: expected an integer, got {value!r}") from None
    return None if v == -1 else v


def _coerce(name: str, value: Any) -> Any:
    field = {f.name: f for f in fields(ADMConfig)}[name]
    typ = str(field.type)
    if name == "channel_mult":
        return _parse_tuple(name, value, float)
    if name == "attention_resolutions":
        return _parse_tuple(name, value, int)
    if name in ("num_head_channels", "num_heads_upsample"):
        return _parse_optional_int(name, value)
    if typ == "bool":
        return _parse_bool(name, value)
    if typ == "int":
        if isinstance(value, bool):
            raise ConfigError(f"flag {name}: expected an integer, got {value!r}")
        try:
            f = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"flag {name}: expected an integer, got {value!r}") from None
        if not f.is_integer():
            raise ConfigError(f"flag {name}: expected an integer, got {value!r}")
        return int(f)
    if typ == "float":
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"flag {name}: expected a number, got {value!r}") from None
    return str(value)


def valid_flag_names() -> list[str]:
    return sorted({f.name for f in fields(ADMConfig)} | IGNORED_FLAGS)


def apply_flags(base: ADMConfig, flags: Mapping[str, Any]) -> ADMConfig:
    """Return ``base`` with guided-diffusion ``flags`` applied (strictly parsed).

    Raises:
        ConfigError: an unknown flag name (the message lists the valid ones) or a bad value.
    """
    known = {f.name for f in fields(ADMConfig)}
    updates: dict[str, Any] = {}
    for name, value in flags.items():
        if name in IGNORED_FLAGS:
            continue
        if name not in known:
            raise ConfigError(f"unknown flag {name!r}; valid flags: {', '.join(valid_flag_names())}")
        updates[name] = _coerce(name, value)
    return dataclasses.replace(base, **updates)
