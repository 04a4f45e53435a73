"""How every trained head (linear, attention, DifFormer, DifFeed, dense) is optimised: the one
:class:`TrainConfig`, and the optimisers and learning-rate schedules it names.

An optimiser factory takes (parameter groups, :class:`TrainConfig`); a
schedule factory takes (optimiser, total scheduler steps): the classification heads step their
schedule once per epoch (total = epochs), the dense heads once per minibatch (total = steps), so
``step`` is "× 0.1 after every quarter of the run" in both. The paper's recipe for every head is
``sgd`` with momentum 0 and no weight decay, and ``step``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from typing import Any

import torch

from diffprobe.probes.base import rng_seed
from diffprobe.probes.errors import ProbeError
from diffprobe.registry import Registry

OptimizerFactory = Callable[[Iterable[dict[str, Any]], "TrainConfig"], torch.optim.Optimizer]
ScheduleFactory = Callable[[torch.optim.Optimizer, int], Any]

OPTIMIZERS: Registry[OptimizerFactory] = Registry("optimizer", error=ProbeError)
SCHEDULES: Registry[ScheduleFactory] = Registry("schedule", error=ProbeError)

OPTIMIZERS.register("sgd", lambda groups, cfg: torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay))
OPTIMIZERS.register("adamw", lambda groups, cfg: torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay))

SCHEDULES.register("step", lambda opt, total: torch.optim.lr_scheduler.StepLR(opt, step_size=max(1, total // 4), gamma=0.1))
SCHEDULES.register("cosine", lambda opt, total: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, total)))
SCHEDULES.register("poly", lambda opt, total: torch.optim.lr_scheduler.PolynomialLR(opt, total_iters=max(1, total), power=0.9))
SCHEDULES.register("constant", lambda opt, total: torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0))


@dataclass(frozen=True)
class TrainConfig:
    """One training run. ``lr`` is the base rate; parameter groups may carry their own ``lr``.

    ``momentum`` applies to ``sgd`` (the paper: 0; dense heads default to 0.9). ``num_threads``: CPU
    threads while training; None = one for small models (see :func:`~diffprobe.probes.arrays.torch_threads`),
    torch's setting otherwise.
    """

    optimizer: str = "sgd"
    lr: float = 1e-2
    momentum: float = 0.0
    weight_decay: float = 0.0
    epochs: int = 28
    batch_size: int = 128
    schedule: str = "step"
    device: str = "cpu"
    amp: bool = True
    chunk_size: int = 65536
    seed: int = 0
    num_threads: int | None = None

    @classmethod
    def of(cls, probe: Any, **overrides: Any) -> TrainConfig:
        """A probe estimator's settings: its parameters named like these fields, its
        ``random_state`` as the seed, then ``overrides``."""
        kw = {f.name: getattr(probe, f.name) for f in fields(cls) if f.name != "seed" and hasattr(probe, f.name)}
        return cls(**{**kw, "seed": rng_seed(probe.random_state), **overrides})

    def __post_init__(self) -> None:
        OPTIMIZERS.get(self.optimizer)  # unknown names raise, listing the valid ones
        SCHEDULES.get(self.schedule)
        if not 0.0 <= self.momentum < 1.0:
            raise ProbeError(f"expected momentum in [0, 1), got {self.momentum}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ProbeError(f"expected epochs ≥ 1 and batch_size ≥ 1, got {self.epochs} and {self.batch_size}")


def optimizer_and_schedule(cfg: TrainConfig, groups: Iterable[dict[str, Any]], total: int) -> tuple[torch.optim.Optimizer, Any]:
    """The optimiser over parameter ``groups`` and its schedule over ``total`` scheduler steps, as ``cfg`` names them."""
    opt = OPTIMIZERS.get(cfg.optimizer)(groups, cfg)
    return opt, SCHEDULES.get(cfg.schedule)(opt, total)
