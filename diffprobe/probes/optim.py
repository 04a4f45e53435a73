"""Optimisers and learning-rate schedules of every trained head (linear, attention, DifFormer,
DifFeed, dense), by name.

An optimiser factory takes (parameter groups, :class:`~diffprobe.probes.training.TrainConfig`); a
schedule factory takes (optimiser, total scheduler steps): the classification heads step their
schedule once per epoch (total = epochs), the dense heads once per minibatch (total = steps), so
``step`` is "× 0.1 after every quarter of the run" in both. The paper's recipe for every head is
``sgd`` with momentum 0 and no weight decay, and ``step``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import torch

from diffprobe.probes.errors import ProbeError
from diffprobe.registry import Registry

if TYPE_CHECKING:
    from diffprobe.probes.training import TrainConfig

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


def optimizer_and_schedule(cfg: TrainConfig, groups: Iterable[dict[str, Any]], total: int) -> tuple[torch.optim.Optimizer, Any]:
    """The optimiser over parameter ``groups`` and its schedule over ``total`` scheduler steps, as ``cfg`` names them."""
    opt = OPTIMIZERS.get(cfg.optimizer)(groups, cfg)
    return opt, SCHEDULES.get(cfg.schedule)(opt, total)
