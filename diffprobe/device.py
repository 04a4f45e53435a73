"""Where and in which precision torch code runs: the one device resolver and the one autocast.

Extraction, probes and CKA all take a device by name and go through :func:`resolve_device`, so
``--device`` means the same everywhere: ``auto`` picks the first CUDA device when there is one and
the CPU otherwise; an explicit CUDA request on a machine without CUDA is an error (never a silent
fall-back that would make a GPU run take hours on the CPU).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import torch

from diffprobe.errors import ConfigError

log = logging.getLogger(__name__)

#: What ``--device`` accepts (torch device strings of other kinds are passed through as given).
DEVICE_CHOICES = ("auto", "cpu", "cuda", "cuda:K")
#: Compute precisions: fp32 runs as is; the half precisions through autocast.
PRECISIONS = ("fp32", "bf16", "fp16")
_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def compute_dtype(precision: str) -> torch.dtype:
    """The dtype a precision computes in (fp32, or autocast's half type)."""
    return _AUTOCAST_DTYPES.get(precision, torch.float32)


def resolve_device(name: str | torch.device | None = "auto") -> torch.device:
    """The torch device for ``name`` (``auto``/None: CUDA when available, else the CPU).

    Raises:
        ConfigError: an unparseable name; CUDA asked for where it is not available (the message
            says ``--device cpu``); a CUDA index beyond the visible devices.
    """
    if name is None or name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError):
        raise ConfigError(f"expected a device, got {name!r}; valid: {', '.join(DEVICE_CHOICES)}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {str(name)!r} requested but CUDA is not available here; use --device cpu (or auto)")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise ConfigError(f"expected a CUDA device index below {count}, got {str(name)!r}")
    return dev


def device_name(device: torch.device) -> str:
    """``cpu``, or ``cuda:0 (NVIDIA H200)``: the device with its GPU's name, for provenance."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` → bf16 on CUDA, fp32 elsewhere; a half precision the device cannot autocast → fp32 (logged)."""
    if precision == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    if precision not in PRECISIONS:
        raise ConfigError(f"expected a precision, got {precision!r}; valid: auto, {', '.join(PRECISIONS)}")
    if precision in _AUTOCAST_DTYPES and not torch.amp.is_autocast_available(device.type):
        log.warning("autocast is not available on %s; computing in fp32", device.type)
        return "fp32"
    return precision


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager[object]:
    """The one place compute precision is applied: autocast to bf16/fp16 on ``device``; fp32 as is.

    fp32 on CUDA means exact and reproducible float32 (:func:`exact_fp32`): without it cuDNN may
    round convolution inputs to TF32 and pick a different, possibly non-deterministic, algorithm
    from one call to the next, so stored fp32 bytes would change with what else ran.
    """
    if precision in _AUTOCAST_DTYPES:
        return torch.autocast(device.type, dtype=_AUTOCAST_DTYPES[precision])
    if device.type == "cuda":
        return exact_fp32()
    return contextlib.nullcontext()


#: The torch backend switches :func:`exact_fp32` sets (module, attribute, value inside the block).
_EXACT_FP32: tuple[tuple[Any, str, bool], ...] = (
    (torch.backends.cudnn, "deterministic", True),
    (torch.backends.cudnn, "benchmark", False),
    (torch.backends.cudnn, "allow_tf32", False),
    (torch.backends.cuda.matmul, "allow_tf32", False),
)


@contextlib.contextmanager
def exact_fp32() -> Iterator[None]:
    """Within the block, CUDA float32 is IEEE float32 computed the same way every call: no TF32 in
    convolutions or matmuls, deterministic cuDNN algorithms, no cuDNN autotuning. The previous
    settings come back on exit (nothing is set globally).

    The cost: TF32 convolutions run several times faster than IEEE fp32 ones on Ampere and later
    GPUs, and deterministic algorithms can be slower still; bf16 (the default on CUDA) is the fast path.
    """
    saved = [getattr(mod, name) for mod, name, _ in _EXACT_FP32]
    try:
        for mod, name, value in _EXACT_FP32:
            setattr(mod, name, value)
        yield
    finally:
        for (mod, name, _), old in zip(_EXACT_FP32, saved, strict=True):
            setattr(mod, name, old)
