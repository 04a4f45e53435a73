"""One training configuration for every trained head (:class:`TrainConfig`), and the shared
minibatch loop of the classification heads (linear, attention, DifFormer).

Optimisers and learning-rate schedules come from the registries of :mod:`diffprobe.probes.optim`.
The paper's recipe for every head is ``optimizer="sgd"`` (momentum 0, no weight decay) with
``schedule="step"``: 28 epochs, lr × 0.1 every 7 (a quarter of the epochs). Device and precision are applied here and nowhere else:
autocast (bfloat16) only on CUDA. Every run shows a progress bar of epochs with the last epoch's
mean loss and training accuracy (both accumulated on the device), quiet when not on a terminal.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from diffprobe.device import autocast
from diffprobe.probes.arrays import as_numpy, is_in_memory, on_device, release_freed, torch_threads
from diffprobe.probes.optim import TrainConfig, optimizer_and_schedule

log = logging.getLogger(__name__)

def minibatches(X: Any, y: np.ndarray, batch_size: int, gen: torch.Generator, chunk_size: int) -> Iterator[tuple[Tensor, Tensor]]:
    """One epoch of shuffled (x, y) CPU batches.

    In memory: a full permutation. Chunked arrays: chunks in random order, rows shuffled within each
    chunk, so only one chunk is in memory at a time.
    """
    n = X.shape[0]
    yt = torch.as_tensor(y)
    if is_in_memory(X):
        Xt = X if isinstance(X, Tensor) else torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))
        perm = torch.randperm(n, generator=gen)
        for s in range(0, n, batch_size):
            idx = perm[s : s + batch_size]
            yield Xt[idx], yt[idx]
        return
    starts = torch.randperm((n + chunk_size - 1) // chunk_size, generator=gen) * chunk_size
    for s in starts.tolist():
        xc = torch.from_numpy(as_numpy(X[s : s + chunk_size]))
        yc = yt[s : s + xc.shape[0]]
        perm = torch.randperm(xc.shape[0], generator=gen)
        for b in range(0, xc.shape[0], batch_size):
            idx = perm[b : b + batch_size]
            yield xc[idx], yc[idx]
        del xc
        release_freed()  # the chunk's reads, before the next chunk's (see release_freed)


def amp_precision(device: torch.device, amp: bool) -> str:
    """The probes' precision: bf16 autocast on CUDA when ``amp``; fp32 elsewhere (CPU autocast is slower, not faster)."""
    return "bf16" if amp and device.type == "cuda" else "fp32"


def train_module(
    module: nn.Module,
    groups: list[dict[str, Any]],
    X: Any,
    y: np.ndarray,
    cfg: TrainConfig,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    device: torch.device,
    work: float | None = None,
    desc: str = "train",
) -> list[float]:
    """Train ``module`` in place with ``cfg``; returns the mean loss of each epoch.

    A progress bar (``desc``) shows the epochs with the mean loss and training accuracy of the last
    one; it is quiet when stderr is not a terminal.

    Args:
        groups: optimiser parameter groups (dicts with "params", optionally "lr").
        X: (N, D) features, in memory or chunked; y: (N,) int64 targets.
        loss_fn: (module output, targets) → scalar loss; the output is logits (B, K), or (B, H, K)
            for H heads (the accuracy shown is then the mean over heads).
        work: multiply-adds per step, for choosing CPU threads (default: batch × parameters).
    """
    opt, sched = optimizer_and_schedule(cfg, groups, cfg.epochs)
    gen = torch.Generator().manual_seed(cfg.seed)
    if work is None:
        work = cfg.batch_size * sum(p.numel() for p in module.parameters())
    work = work if device.type == "cpu" else None
    module.train()
    staged = on_device(X, device, cfg.chunk_size)  # on a GPU with room: copied once, not once per epoch
    with torch_threads(cfg.num_threads, work):
        history = _epochs(module, opt, sched, X if staged is None else staged, y, cfg, loss_fn, device, gen, desc)
    del staged
    module.eval()
    return history


def count_hits(logits: Tensor, y: Tensor) -> Tensor:
    """Correct predictions in a batch, on the device: logits (B, K) or (B, H, K), y (B,) → scalar
    (for H heads, each sample counts the fraction of heads that got it right)."""
    pred = logits.detach().argmax(-1)
    right = pred == y.view(-1, *([1] * (pred.dim() - 1)))
    return right.float().reshape(pred.shape[0], -1).mean(1).sum()


def _epochs(
    module: nn.Module,
    opt: torch.optim.Optimizer,
    sched: Any,
    X: Any,
    y: np.ndarray,
    cfg: TrainConfig,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    device: torch.device,
    gen: torch.Generator,
    desc: str,
) -> list[float]:
    from tqdm.auto import tqdm

    from diffprobe.progress import bar_disabled

    history = []
    with tqdm(total=cfg.epochs, desc=desc, unit="epoch", leave=False, disable=bar_disabled()) as bar:
        for epoch in range(cfg.epochs):
            # Loss and hits stay on the device: one host sync per epoch, none per step.
            total = torch.zeros((), device=device)
            hits = torch.zeros((), device=device)
            count = 0
            for xb, yb in minibatches(X, y, cfg.batch_size, gen, cfg.chunk_size):
                xb = xb.to(device, non_blocking=True)
                yb = yb.to(device, non_blocking=True)
                with autocast(amp_precision(device, cfg.amp), device):
                    out = module(xb)
                    loss = loss_fn(out, yb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += loss.detach().float() * xb.shape[0]
                hits += count_hits(out, yb)
                count += xb.shape[0]
            sched.step()
            loss_sum, hit_sum = torch.stack([total, hits]).tolist()
            history.append(loss_sum / max(count, 1))
            acc = hit_sum / max(count, 1)
            bar.set_postfix({"loss": f"{history[-1]:.4f}", "acc": f"{100 * acc:.1f}%"}, refresh=False)
            bar.update()
            log.debug("epoch %d/%d: loss %.4f, training accuracy %.4f", epoch + 1, cfg.epochs, history[-1], acc)
        bar.refresh()  # the last epoch, however fast the run was
    return history


@torch.no_grad()
def predict_module(module: nn.Module, X: Any, batch_size: int, device: torch.device, amp: bool) -> np.ndarray:
    """Softmax of ``module(X)`` (N, K) computed in batches, as float32 numpy."""
    module.eval()
    out = []
    lazy = not is_in_memory(X)
    for s in range(0, X.shape[0], batch_size):
        xb = torch.from_numpy(as_numpy(X[s : s + batch_size])).to(device)
        with autocast(amp_precision(device, amp), device):
            logits = module(xb)
        out.append(torch.softmax(logits.float(), dim=-1).cpu().numpy())
        if lazy:
            release_freed()
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)
