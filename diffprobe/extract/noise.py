"""Forward processes (how a clean input is noised at step t) and deterministic per-item noise.

Two processes, both ``x_t = a_t·x0 + s_t·eps``, told apart by what ``t`` means:

- :class:`NoiseSchedule` — variance-preserving DDPM (Ho et al. 2020): t is an integer step in
  0..T−1 of the training schedule, a_t = sqrt(ᾱ_t), s_t = sqrt(1 − ᾱ_t).
- :class:`RectifiedFlow` — rectified flow (Liu et al. 2022; Esser et al. 2024, eq. 1): t is σ·T
  before the model's schedule shift (T = 1000: ``--t 500`` is σ = 0.5 before the shift),
  a_t = 1 − σ_t, s_t = σ_t with σ_t the shifted σ (Esser et al. 2024, eq. 23).

A model family picks its process (from a diffusers scheduler configuration, say); everything
downstream calls :func:`q_sample`, whatever the process.
"""

from __future__ import annotations

import abc
import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from diffprobe.errors import ConfigError
from diffprobe.registry import Registry

#: One noise pass of an item: (view, t, draw) — its noise is a pure function of these, the seed and the item id.
Pass = tuple[int, int, int]

#: β schedules by name: steps → (T,) float64 betas.
SCHEDULES: Registry[Callable[[int], np.ndarray]] = Registry("noise schedule", sort=True)
register_schedule = SCHEDULES.register


@register_schedule("linear")
def linear_betas(steps: int) -> np.ndarray:
    """Ho et al. 2020: β linear from 1e-4 to 0.02, rescaled so any ``steps`` spans the same range."""
    scale = 1000.0 / steps
    return np.linspace(scale * 1e-4, scale * 0.02, steps, dtype=np.float64)


@register_schedule("cosine")
def cosine_betas(steps: int, max_beta: float = 0.999) -> np.ndarray:
    """Nichol & Dhariwal 2021 eq. 17: ᾱ(t) = cos²((t/T + s)/(1 + s) · π/2), s = 0.008, β clipped."""

    def abar(u: float) -> float:
        return math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2

    return np.array([min(1 - abar((i + 1) / steps) / abar(i / steps), max_beta) for i in range(steps)])


class ForwardProcess(abc.ABC):
    """q(x_t | x0) = N(a_t·x0, s_t²·I) over integer t in [0, steps): what every process gives :func:`q_sample`."""

    name: str
    steps: int

    @property
    def noiseless(self) -> bool:
        """One step that adds no noise: the process of an image model without diffusion."""
        return False

    def check_t(self, t: Sequence[int] | np.ndarray | Tensor) -> None:
        arr = np.asarray(t.cpu() if isinstance(t, Tensor) else t)
        if arr.size and (arr.min() < 0 or arr.max() >= self.steps):
            raise ConfigError(f"timesteps must be integers in [0, {self.steps - 1}], got {arr.tolist()}")

    @abc.abstractmethod
    def scales(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """(a_t, s_t), each (N,) float64 on the CPU, for (N,) int64 timesteps ``t`` (already checked)."""


@dataclass(frozen=True)
class NoiseSchedule(ForwardProcess):
    """Variance-preserving DDPM: ``betas`` and ``alphas_cumprod`` (ᾱ_t), float64, length T."""

    name: str
    steps: int
    betas: np.ndarray = field(repr=False, compare=False)

    @property
    def alphas_cumprod(self) -> np.ndarray:
        return np.cumprod(1.0 - self.betas)

    @property
    def noiseless(self) -> bool:
        """One step that adds no noise (ᾱ_0 = 1): the schedule of an image model without diffusion."""
        return self.steps == 1 and not np.any(self.betas)

    def scales(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """Ho et al. 2020, eq. 4: (sqrt(ᾱ_t), sqrt(1 − ᾱ_t))."""
        abar = torch.from_numpy(self.alphas_cumprod)[t]
        return abar.sqrt(), (1 - abar).sqrt()


@dataclass(frozen=True)
class RectifiedFlow(ForwardProcess):
    """Rectified flow x_σ = (1 − σ)·x0 + σ·eps with σ = shift·u / (1 + (shift − 1)·u), u = t / steps.

    Attributes:
        shift: the schedule shift (1 = none; SD3 3.0; Flux.1-dev exp(μ) for its resolution's μ).
        steps: T, the number of training timesteps: t in [0, T) is u = t/T before the shift.
    """

    shift: float
    steps: int = 1000
    name: str = "rectified-flow"

    @property
    def sigmas(self) -> np.ndarray:
        """(T,) float64: σ of every t."""
        u = np.arange(self.steps, dtype=np.float64) / self.steps
        return self.shift * u / (1 + (self.shift - 1) * u)

    def scales(self, t: Tensor) -> tuple[Tensor, Tensor]:
        sigma = torch.from_numpy(self.sigmas)[t]
        return 1 - sigma, sigma


#: Forward processes by name (what a store's identity records as "process").
PROCESSES: Registry[type[ForwardProcess]] = Registry("forward process")
PROCESSES.register("ddpm", NoiseSchedule)
PROCESSES.register("rectified-flow", RectifiedFlow)


def make_schedule(name: str, steps: int = 1000) -> NoiseSchedule:
    """The named β schedule (``linear`` or ``cosine``) over ``steps`` steps."""
    return NoiseSchedule(name, steps, SCHEDULES.get(name)(steps))


def q_sample(x0: Tensor, t: Tensor | int, eps: Tensor, schedule: ForwardProcess) -> Tensor:
    """Forward noising ``x_t = a_t·x0 + s_t·eps`` of ``schedule``'s process: DDPM's
    ``sqrt(ᾱ_t)·x0 + sqrt(1 − ᾱ_t)·eps`` (Ho et al. 2020, eq. 4) or rectified flow's
    ``(1 − σ_t)·x0 + σ_t·eps`` (Esser et al. 2024, eq. 1).

    Args:
        x0: (N, C, H, W) clean inputs.
        t: (N,) integer timesteps, or one int for all.
        eps: (N, C, H, W) standard normal noise.
    Returns:
        (N, C, H, W) x_t in x0's dtype.
    """
    if eps.shape != x0.shape:
        raise ValueError(f"eps shape {tuple(eps.shape)} must equal x0 shape {tuple(x0.shape)}")
    tt = torch.as_tensor(t, device="cpu").long().reshape(-1)
    schedule.check_t(tt)
    if tt.numel() == 1:
        tt = tt.expand(x0.shape[0])
    a64, s64 = schedule.scales(tt)
    if x0.device.type == "cuda":  # a pageable host→device copy would wait for all queued GPU work
        a64, s64 = a64.pin_memory(), s64.pin_memory()
    shape = (-1,) + (1,) * (x0.dim() - 1)
    work = torch.promote_types(x0.dtype, torch.float32)
    a = a64.to(device=x0.device, non_blocking=True).reshape(shape).to(work)
    s = s64.to(device=x0.device, non_blocking=True).reshape(shape).to(work)
    return (a * x0.to(work) + s * eps.to(work)).to(x0.dtype)


def item_seed(seed: int, item_id: int | str, t: int, draw: int = 0, view: int = 0) -> int:
    """A 63-bit generator seed that is a pure function of (seed, item id, t, draw, view).

    View 0 (the evaluation transform) keeps the seed of a store without views, so its noise — and
    its features — are those of a single-view extraction."""
    key = f"diffprobe-noise:{int(seed)}:{item_id}:{int(t)}:{int(draw)}{f':v{int(view)}' if view else ''}".encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") >> 1


def noise_like(
    x0: Tensor,
    item_ids: Sequence[int | str] | Tensor,
    t: int | Sequence[int] | Tensor,
    seed: int,
    draw: int = 0,
    view: int = 0,
) -> Tensor:
    """Standard normal noise for each item, independent of batch composition.

    Item i's noise depends only on (seed, item_ids[i], t_i, draw, view): the same item gets the same noise
    whatever batch, worker or shard it is processed in.

    Args:
        x0: (N, C, H, W) reference tensor (shape, dtype and device of the result).
        item_ids: N stable item identifiers (ints or strings).
        t: one timestep for all items, or (N,) timesteps.
    Returns:
        (N, C, H, W) noise.
    """
    ids = item_ids.tolist() if isinstance(item_ids, Tensor) else list(item_ids)
    n = x0.shape[0]
    if len(ids) != n:
        raise ValueError(f"got {len(ids)} item ids for a batch of {n}")
    ts = torch.as_tensor(t).reshape(-1).tolist()
    if len(ts) == 1:
        ts = ts * n
    if len(ts) != n:
        raise ValueError(f"got {len(ts)} timesteps for a batch of {n}")
    # Generated on the CPU (one generator per item); pinned so that the copy to a GPU is async.
    out = torch.empty((n, *x0.shape[1:]), dtype=torch.float32, pin_memory=x0.is_cuda)
    for i, (item, ti) in enumerate(zip(ids, ts)):
        item_noise(item, int(ti), seed, draw, tuple(x0.shape[1:]), out=out[i], view=view)
    return out.to(device=x0.device, dtype=x0.dtype, non_blocking=True)


def item_noise(
    item_id: int | str, t: int, seed: int, draw: int, shape: tuple[int, ...], out: Tensor | None = None, view: int = 0
) -> Tensor:
    """The standard normal noise of one item: (C, H, W) float32 on the CPU, a pure function of
    (seed, item id, t, draw, view). DataLoader workers call this to make noise off the critical path."""
    gen = torch.Generator(device="cpu")
    gen.manual_seed(item_seed(seed, item_id, t, draw, view))
    if out is None:
        return torch.randn(shape, generator=gen)
    return torch.randn(shape, generator=gen, out=out)
