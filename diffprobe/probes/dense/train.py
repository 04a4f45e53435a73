"""Fitting a dense head with a :class:`~diffprobe.probes.training.TrainConfig` (the one training
configuration of every head; its schedule steps once per minibatch here), cross-entropy that skips
the ignore index."""

from __future__ import annotations

import logging

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from diffprobe.probes.dense.heads import DenseHead
from diffprobe.probes.dense.metrics import confusion
from diffprobe.probes.dense.source import Source
from diffprobe.probes.optim import TrainConfig, optimizer_and_schedule
from diffprobe.progress import bar_disabled
from diffprobe.store.layout import IGNORE_INDEX

log = logging.getLogger(__name__)


def fit_head(head: DenseHead, source: Source, cfg: TrainConfig, max_memory: int = 512 << 20) -> list[float]:
    """Train ``head`` on ``source``'s batches (every view of an item when the source reads every view),
    holding at most ``max_memory`` bytes of items at once; returns the mean loss of each epoch."""
    dev = torch.device(cfg.device)
    torch.manual_seed(cfg.seed)
    head.to(dev).train()
    steps = max(1, cfg.epochs * -(-source.samples // cfg.batch_size))
    opt, sched = optimizer_and_schedule(cfg, [{"params": list(head.parameters())}], steps)
    rng = np.random.default_rng(cfg.seed)
    losses = []
    bar = tqdm(total=steps, desc=f"dense {type(head).__name__}", unit="step", leave=False, disable=bar_disabled())
    for epoch in range(cfg.epochs):
        total, n = 0.0, 0
        bar.set_postfix(epoch=f"{epoch + 1}/{cfg.epochs}", refresh=False)
        for maps, masks in source.batches(cfg.batch_size, rng, max_memory):
            loss = head.loss([m.to(dev) for m in maps], masks.to(dev))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total, n = total + float(loss.detach()) * len(masks), n + len(masks)
            bar.update(1)
        losses.append(total / max(n, 1))
        bar.set_postfix(epoch=f"{epoch + 1}/{cfg.epochs}", loss=f"{losses[-1]:.4f}", refresh=False)
        log.debug("dense head epoch %d/%d: loss %.4f", epoch + 1, cfg.epochs, losses[-1])
    bar.close()
    return losses


@torch.no_grad()
def evaluate(head: nn.Module, source: Source, n_classes: int, device: str, batch_size: int = 64,
             max_memory: int = 512 << 20) -> np.ndarray:  # fmt: skip
    """The (K, K) confusion matrix of ``head`` over ``source``."""
    head.to(torch.device(device)).eval()
    conf = np.zeros((n_classes, n_classes), np.int64)
    batches = source.batches(batch_size, None, max_memory)
    for maps, masks in tqdm(batches, total=-(-source.samples // batch_size), desc="dense: evaluating", unit="batch", leave=False, disable=bar_disabled()):
        pred = head([m.to(device) for m in maps], source.mask_size).argmax(1).cpu()
        conf += confusion(pred, masks, n_classes, IGNORE_INDEX)
    return conf
