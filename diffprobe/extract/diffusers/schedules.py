"""The forward process a diffusers scheduler configuration describes: DDPM's β schedule or rectified flow.

A pipeline's scheduler is a sampler, but its configuration also holds the training noise: the β
schedule of DDPM-trained models (``DDPMScheduler``, ``EulerDiscreteScheduler``, …) or the σ shift of
flow-matching ones (``FlowMatchEulerDiscreteScheduler``; ``DPMSolverMultistepScheduler`` with
``use_flow_sigmas``, as SANA ships it). :func:`process_fields` keeps the fields that define the noise
(what a store's identity records) and :func:`make_process` builds the process from them.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from diffprobe.errors import ConfigError
from diffprobe.extract.noise import ForwardProcess, NoiseSchedule, RectifiedFlow

SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")
#: Scheduler classes that train (and sample) rectified flow whatever their other fields say.
FLOW_SCHEDULERS = ("FlowMatchEulerDiscreteScheduler", "FlowMatchHeunDiscreteScheduler")
#: σ-spacing options of flow schedulers that change the sampler only (never the training noise) but
#: that diffprobe refuses, as it cannot tell which training σ they stand for.
_UNSUPPORTED_FLOW = ("shift_terminal", "invert_sigmas")


def is_flow(sched: dict[str, Any]) -> bool:
    """Whether a scheduler configuration describes a rectified-flow model."""
    return (str(sched.get("_class_name", "")) in FLOW_SCHEDULERS or bool(sched.get("use_flow_sigmas"))
            or sched.get("prediction_type") == "flow_prediction")  # fmt: skip


def schedule_fields(sched: dict[str, Any]) -> dict[str, Any]:
    """The fields of a DDPM scheduler configuration that define the training noise (β_t)."""
    keys = ("num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "trained_betas", "rescale_betas_zero_snr")
    defaults = {"num_train_timesteps": 1000, "beta_start": 0.0001, "beta_end": 0.02, "beta_schedule": "linear",
                "trained_betas": None, "rescale_betas_zero_snr": False}  # fmt: skip
    return {k: sched.get(k, defaults[k]) for k in keys}


def flow_fields(sched: dict[str, Any], where: str) -> dict[str, Any]:
    """The fields of a flow-matching scheduler configuration that define σ(t): the static shift, or
    the resolution-dependent ("dynamic") one of Flux.1-dev.

    Raises:
        ConfigError: the configuration uses a σ spacing diffprobe does not reproduce.
    """
    bad = [k for k in _UNSUPPORTED_FLOW if sched.get(k)]
    if bad:
        raise ConfigError(f"{where}: the flow scheduler sets {', '.join(bad)}; diffprobe noises with a plain (optionally "
                          "shifted) σ = t/T only: remove these fields from scheduler_config.json if training used plain σ")  # fmt: skip
    shift = sched["flow_shift"] if sched.get("flow_shift") is not None else sched.get("shift", 1.0)  # DPM-Solver's name for it
    dynamic = bool(sched.get("use_dynamic_shifting", False))
    out: dict[str, Any] = {"process": "rectified-flow", "num_train_timesteps": int(sched.get("num_train_timesteps", 1000)),
                           "shift": float(shift), "use_dynamic_shifting": dynamic}  # fmt: skip
    if dynamic:
        out.update({"base_shift": float(sched.get("base_shift", 0.5)), "max_shift": float(sched.get("max_shift", 1.15)),
                    "base_image_seq_len": int(sched.get("base_image_seq_len", 256)),
                    "max_image_seq_len": int(sched.get("max_image_seq_len", 4096)),
                    "time_shift_type": str(sched.get("time_shift_type", "exponential"))})  # fmt: skip
    return out


def process_fields(sched: dict[str, Any], where: str) -> dict[str, Any]:
    """The noise-defining fields of any scheduler configuration (DDPM fields carry no "process" key,
    so a DDPM model's store identity is what it was before flow models existed)."""
    return flow_fields(sched, where) if is_flow(sched) else schedule_fields(sched)


def effective_shift(fields: dict[str, Any], image_tokens: int) -> float:
    """The σ shift for an image of ``image_tokens`` tokens: the static ``shift``, or with dynamic
    shifting exp(μ) (μ linear in the token count between the base and max sequence lengths, as
    Flux.1 was trained) — "linear" time-shift configurations use μ itself."""
    if not fields.get("use_dynamic_shifting"):
        return float(fields["shift"])
    lo, hi = fields["base_image_seq_len"], fields["max_image_seq_len"]
    slope = (fields["max_shift"] - fields["base_shift"]) / (hi - lo)
    mu = fields["base_shift"] + slope * (image_tokens - lo)
    return math.exp(mu) if fields["time_shift_type"] == "exponential" else float(mu)


def make_process(fields: dict[str, Any], image_tokens: int) -> ForwardProcess:
    """The forward process of :func:`process_fields`' output (``image_tokens``: the denoiser's
    image sequence length, for a dynamic shift)."""
    if fields.get("process") == "rectified-flow":
        return RectifiedFlow(effective_shift(fields, image_tokens), int(fields["num_train_timesteps"]))
    return make_schedule(fields)


def make_schedule(fields: dict[str, Any]) -> NoiseSchedule:
    """The β schedule a diffusers scheduler configuration describes (computed in float32 as diffusers
    does; ᾱ_t accumulated in float64)."""
    steps = int(fields["num_train_timesteps"])
    kind = fields["beta_schedule"]
    if fields.get("trained_betas") is not None:
        betas = np.asarray(fields["trained_betas"], dtype=np.float32)
    elif kind == "linear":
        betas = torch.linspace(fields["beta_start"], fields["beta_end"], steps, dtype=torch.float32).numpy()
    elif kind == "scaled_linear":
        betas = (torch.linspace(fields["beta_start"] ** 0.5, fields["beta_end"] ** 0.5, steps, dtype=torch.float32) ** 2).numpy()
    elif kind == "squaredcos_cap_v2":  # Nichol & Dhariwal's cosine ᾱ, β capped at 0.999
        f = lambda u: np.cos((u + 0.008) / 1.008 * np.pi / 2) ** 2
        i = np.arange(steps, dtype=np.float64)
        betas = np.minimum(1 - f((i + 1) / steps) / f(i / steps), 0.999).astype(np.float32)
    else:
        raise ConfigError(f"noise schedule {kind!r} is not supported; diffprobe reads {', '.join(SCHEDULES)} (or trained_betas)")
    betas = betas.astype(np.float64)
    if fields.get("rescale_betas_zero_snr"):  # Lin et al. 2024, algorithm 1: shift and scale sqrt(ᾱ) so that ᾱ_T = 0
        a = np.sqrt(np.cumprod(1 - betas))
        a = (a - a[-1]) * a[0] / (a[0] - a[-1])
        abar = a**2
        betas = 1 - np.concatenate([abar[:1], abar[1:] / abar[:-1]])
    return NoiseSchedule(f"diffusers-{kind}", steps, betas)
