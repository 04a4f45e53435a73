"""Fitting a dense head: AdamW with a cosine schedule, cross-entropy that skips the ignore index."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from diffprobe.probes.dense.metrics import confusion
from diffprobe.probes.dense.source import DenseSource
from diffprobe.store.layout import IGNORE_INDEX

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DenseTraining:
    """How a dense head is trained.

    Attributes:
        epochs: passes over the training items; batch_size: items per step; lr, weight_decay: AdamW's;
        seed: initialisation and shuffling; device: where the head runs.
    """

    epochs: int = 30
    batch_size: int = 32
    lr: float = 1e-2
    weight_decay: float = 1e-4
    seed: int = 0
    device: str = "cpu"


def fit_head(head: nn.Module, source: DenseSource, cfg: DenseTraining) -> list[float]:
    """Train ``head`` on ``source``'s batches; returns the mean loss of each epoch."""
    dev = torch.device(cfg.device)
    torch.manual_seed(cfg.seed)
    head.to(dev).train()
    opt = torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = cfg.epochs * -(-len(source.rows) // cfg.batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, steps))
    rng = np.random.default_rng(cfg.seed)
    size = source.mask_size
    losses = []
    for epoch in range(cfg.epochs):
        total, n = 0.0, 0
        for maps, masks in source.batches(cfg.batch_size, rng):
            logits = head([m.to(dev) for m in maps], size)
            loss = F.cross_entropy(logits, masks.to(dev), ignore_index=IGNORE_INDEX)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total, n = total + float(loss.detach()) * len(masks), n + len(masks)
        losses.append(total / max(n, 1))
        log.debug("dense head epoch %d/%d: loss %.4f", epoch + 1, cfg.epochs, losses[-1])
    return losses


@torch.no_grad()
def evaluate(head: nn.Module, source: DenseSource, n_classes: int, device: str, batch_size: int = 64) -> np.ndarray:
    """The (K, K) confusion matrix of ``head`` over ``source``."""
    head.to(torch.device(device)).eval()
    conf = np.zeros((n_classes, n_classes), np.int64)
    for maps, masks in source.batches(batch_size):
        pred = head([m.to(device) for m in maps], source.mask_size).argmax(1).cpu()
        conf += confusion(pred, masks, n_classes, IGNORE_INDEX)
    return conf
