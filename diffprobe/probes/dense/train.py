"""Fitting a dense head: AdamW with a cosine schedule, cross-entropy that skips the ignore index."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from diffprobe.errors import ConfigError
from diffprobe.probes.dense.heads import DenseHead
from diffprobe.probes.dense.metrics import confusion
from diffprobe.probes.dense.source import Source
from diffprobe.store.layout import IGNORE_INDEX

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DenseTraining:
    """How a dense head is trained.

    Attributes:
        epochs: passes over the training items; batch_size: items per step; lr, weight_decay: AdamW's;
        seed: initialisation and shuffling; device: where the head runs; max_memory: bytes of
            items held at once (the streaming window, see :meth:`DenseSource.batches`);
        optimizer: ``adamw`` or ``sgd`` (momentum 0.9, as segmentation heads are often trained);
        schedule: ``cosine`` (to 0 over all steps), ``poly`` (power 0.9, as mmseg) or ``constant``.
    """

    epochs: int = 30
    batch_size: int = 32
    lr: float = 1e-2
    weight_decay: float = 1e-4
    seed: int = 0
    device: str = "cpu"
    max_memory: int = 512 << 20
    optimizer: str = "adamw"
    schedule: str = "cosine"


OPTIMIZERS = ("adamw", "sgd")
SCHEDULES = ("cosine", "poly", "constant")


def make_optimizer(head: nn.Module, cfg: DenseTraining) -> torch.optim.Optimizer:
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(head.parameters(), lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)
    raise ConfigError(f"unknown optimizer {cfg.optimizer!r}; valid: {', '.join(OPTIMIZERS)}")


def make_schedule(opt: torch.optim.Optimizer, name: str, steps: int) -> torch.optim.lr_scheduler.LRScheduler:
    if name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    if name == "poly":
        return torch.optim.lr_scheduler.PolynomialLR(opt, total_iters=steps, power=0.9)
    if name == "constant":
        return torch.optim.lr_scheduler.ConstantLR(opt, factor=1.0, total_iters=0)
    raise ConfigError(f"unknown schedule {name!r}; valid: {', '.join(SCHEDULES)}")


def fit_head(head: DenseHead, source: Source, cfg: DenseTraining) -> list[float]:
    """Train ``head`` on ``source``'s batches (every view of an item when the source reads every view); returns the mean loss of each epoch."""
    dev = torch.device(cfg.device)
    torch.manual_seed(cfg.seed)
    head.to(dev).train()
    opt = make_optimizer(head, cfg)
    steps = max(1, cfg.epochs * -(-source.samples // cfg.batch_size))
    sched = make_schedule(opt, cfg.schedule, steps)
    rng = np.random.default_rng(cfg.seed)
    losses = []
    for epoch in range(cfg.epochs):
        total, n = 0.0, 0
        for maps, masks in source.batches(cfg.batch_size, rng, cfg.max_memory):
            loss = head.loss([m.to(dev) for m in maps], masks.to(dev))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total, n = total + float(loss.detach()) * len(masks), n + len(masks)
        losses.append(total / max(n, 1))
        log.debug("dense head epoch %d/%d: loss %.4f", epoch + 1, cfg.epochs, losses[-1])
    return losses


@torch.no_grad()
def evaluate(head: nn.Module, source: Source, n_classes: int, device: str, batch_size: int = 64,
             max_memory: int = 512 << 20) -> np.ndarray:  # fmt: skip
    """The (K, K) confusion matrix of ``head`` over ``source``."""
    head.to(torch.device(device)).eval()
    conf = np.zeros((n_classes, n_classes), np.int64)
    for maps, masks in source.batches(batch_size, None, max_memory):
        pred = head([m.to(device) for m in maps], source.mask_size).argmax(1).cpu()
        conf += confusion(pred, masks, n_classes, IGNORE_INDEX)
    return conf
