"""Linear probes trained by minibatch SGD/AdamW, many heads in one pass over the data.

A *head* is (column group, learning rate). Column groups let several store keys, concatenated into
one X, be probed side by side: each key gets its own heads and every minibatch is read once for all
of them. The logits of all heads over one group come from a single matmul (weights concatenated
along the output dimension); the losses are summed, so each head gets exactly the gradient it would
get alone, while each keeps its own optimiser parameter group (its own lr, also under AdamW).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, cast

import numpy as np
import torch
from sklearn.utils.validation import check_is_fitted
from torch import Tensor, nn

from diffprobe.device import resolve_device
from diffprobe.probes.arrays import row_chunks, take_rows
from diffprobe.probes.base import ProbeBase, rng_seed, seeded
from diffprobe.probes.errors import ProbeError
from diffprobe.probes.optim import TrainConfig
from diffprobe.probes.splits import stratified_holdout
from diffprobe.probes.training import predict_module, train_module

log = logging.getLogger(__name__)


class MultiHeadLinear(nn.Module):
    """Independent linear heads over column groups of one input.

    Args:
        bounds: (start, stop) columns of each group.
        heads: group index of each head.
        n_classes: K.
    Forward: x (B, D) → logits (B, H, K).
    """

    def __init__(self, bounds: Sequence[tuple[int, int]], heads: Sequence[int], n_classes: int) -> None:
        super().__init__()
        self.bounds = [tuple(map(int, b)) for b in bounds]
        self.heads = [int(g) for g in heads]
        self.n_classes = n_classes
        self.layers = nn.ModuleList(nn.Linear(self.bounds[g][1] - self.bounds[g][0], n_classes) for g in self.heads)
        self._by_group = [[h for h, g in enumerate(self.heads) if g == grp] for grp in range(len(self.bounds))]

    def layer(self, h: int) -> nn.Linear:
        return cast(nn.Linear, self.layers[h])

    def forward(self, x: Tensor) -> Tensor:
        out: list[Tensor | None] = [None] * len(self.heads)
        for grp, members in enumerate(self._by_group):
            if not members:
                continue
            a, b = self.bounds[grp]
            W = torch.cat([self.layer(h).weight for h in members], dim=0)
            bias = torch.cat([self.layer(h).bias for h in members], dim=0)
            logits = torch.nn.functional.linear(x[:, a:b], W, bias).unflatten(1, (len(members), self.n_classes))
            for j, h in enumerate(members):
                out[h] = logits[:, j]
        return torch.stack(out, dim=1)  # type: ignore[arg-type]


def _summed_ce(logits: Tensor, y: Tensor) -> Tensor:
    """Σ_heads mean CE: (B, H, K), (B,) → scalar."""
    b, h, k = logits.shape
    return torch.nn.functional.cross_entropy(logits.reshape(b * h, k).float(), y.repeat_interleave(h), reduction="sum") / b


class LinearProbe(ProbeBase):
    """Linear probe(s) by the paper's recipe; several lrs and/or column groups trained in one pass.

    Args:
        lr: one learning rate or several; each (group, lr) pair is a head.
        feature_groups: column counts of consecutive groups (e.g. one per concatenated key);
            None = one group over all columns.
        optimizer: "sgd" (paper: no momentum) or "adamw".
        momentum, weight_decay, epochs, batch_size, schedule: see :class:`TrainConfig` (paper: 0, 0, 28, 128, "step").
        val_fraction: with several learning rates, the stratified hold-out that picks the best lr
            per group (and the group ``predict`` uses); the winners are then retrained on all rows
            (``refit``). With one lr there is no hold-out and ``predict`` uses the group with the
            best training accuracy.
        device: "cpu", "cuda" or "auto". amp: bfloat16 autocast on CUDA.
        num_threads: CPU threads while training (None: one for small heads).
        rows_per_item: consecutive rows that are one item (its views × draws; the runner sets it):
            the hold-out keeps an item's rows together, so no item is both fitted and validated.
        standardize: map every feature to zero mean and unit variance with training statistics
            first (what the CLI does unless --no-standardize).

    Learned: ``heads_`` (one dict per head: group, lr, val_top1), ``best_lr_`` (per group),
    ``best_group_``, ``coef_`` / ``intercept_`` of the final head of every group
    (lists of (K, D_g) and (K,) arrays, on standardised features), ``mean_`` / ``scale_`` (D,) or None.
    """

    def __init__(
        self,
        lr: float | Sequence[float] = 1e-2,
        feature_groups: Sequence[int] | None = None,
        optimizer: str = "sgd",
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        epochs: int = 28,
        batch_size: int = 128,
        schedule: str = "step",
        val_fraction: float = 0.1,
        refit: bool = True,
        device: str = "cpu",
        amp: bool = True,
        chunk_size: int = 65536,
        num_threads: int | None = None,
        random_state: int | None = 0,
        standardize: bool = True,
        rows_per_item: int = 1,
    ) -> None:
        self._keep(locals())

    def _config(self) -> TrainConfig:
        return TrainConfig.of(self, lr=max(self._lrs()))

    def _lrs(self) -> list[float]:
        lrs = [float(self.lr)] if isinstance(self.lr, (int, float, np.number)) else [float(v) for v in self.lr]
        if not lrs or min(lrs) <= 0:
            raise ProbeError(f"expected one or more positive learning rates, got {self.lr!r}")
        return lrs

    def _bounds(self, d: int) -> list[tuple[int, int]]:
        sizes = [d] if self.feature_groups is None else [int(s) for s in self.feature_groups]
        if sum(sizes) != d or min(sizes) < 1:
            raise ProbeError(f"expected feature_groups of positive sizes summing to {d} columns, got {sizes}")
        edges = np.concatenate([[0], np.cumsum(sizes)])
        return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]

    def _train(self, X: Any, y: np.ndarray, heads: list[tuple[int, float]]) -> MultiHeadLinear:
        dev = resolve_device(self.device)
        cfg = self._config()
        with seeded(cfg.seed):
            net = MultiHeadLinear(self.bounds_, [g for g, _ in heads], self.classes_.size)
        net.to(dev)
        groups = [{"params": list(layer.parameters()), "lr": lr} for layer, (_, lr) in zip(net.layers, heads)]
        train_module(net, groups, X, y, cfg, _summed_ce, dev, desc="linear probe")
        return net

    def _fit(self, X: Any, y: np.ndarray) -> None:
        if X.ndim != 2:
            X = X.reshape(X.shape[0], -1)
        self.bounds_ = self._bounds(X.shape[1])
        lrs = self._lrs()
        heads = [(g, lr) for g in range(len(self.bounds_)) for lr in lrs]
        if len(lrs) == 1:
            # One lr: nothing to choose per group, so no hold-out; every group trains on all rows and
            # the reported group (for predict) is the one that fits the training rows best.
            net = self._train(X, y, heads)
            self.heads_ = [{"group": g, "lr": lrs[0], "val_top1": None} for g, _ in heads]
            self.best_lr_ = [lrs[0]] * len(self.bounds_)
            self.best_group_ = 0
            if len(heads) > 1:
                proba = predict_module(net, X, 4096, resolve_device(self.device), self.amp)
                self.best_group_ = int(np.argmax((proba.argmax(-1) == y[:, None]).mean(axis=0)))
        else:
            fit_rows, val_rows = stratified_holdout(y, self.val_fraction, rng_seed(self.random_state), self.rows_per_item)
            net = self._train(take_rows(X, fit_rows), y[fit_rows], heads)
            proba = predict_module(net, take_rows(X, val_rows), 4096, resolve_device(self.device), self.amp)  # (Nv, H, K)
            acc = (proba.argmax(-1) == y[val_rows][:, None]).mean(axis=0)
            self.heads_ = [{"group": g, "lr": lr, "val_top1": float(a)} for (g, lr), a in zip(heads, acc)]
            groups = np.array([g for g, _ in heads])
            best = [int(np.flatnonzero(groups == g)[np.argmax(acc[groups == g])]) for g in range(len(self.bounds_))]
            self.best_lr_ = [heads[h][1] for h in best]
            self.best_group_ = int(np.argmax(acc[best]))
            final = [(g, self.best_lr_[g]) for g in range(len(self.bounds_))]
            if self.refit:
                net = self._train(X, y, final)
            else:
                keep = [heads.index(f) for f in final]
                net.layers = nn.ModuleList(net.layers[i] for i in keep)
        final_layers = [net.layer(h) for h in range(len(self.bounds_))]
        self.coef_ = [layer.weight.detach().cpu().numpy() for layer in final_layers]
        self.intercept_ = [layer.bias.detach().cpu().numpy() for layer in final_layers]

    def predict_proba_groups(self, X: Any) -> np.ndarray:
        """Probabilities of every group's final head: (G, N, K)."""
        check_is_fitted(self, "coef_")
        return self._proba_groups(self._standardized(X))

    def _proba_groups(self, X: Any) -> np.ndarray:
        if X.ndim != 2:
            X = X.reshape(X.shape[0], -1)
        out = np.empty((len(self.bounds_), X.shape[0], self.classes_.size), dtype=np.float32)
        for start, rows in row_chunks(X, self.chunk_size):
            for g, ((a, b), W, c) in enumerate(zip(self.bounds_, self.coef_, self.intercept_)):
                z = rows[:, a:b] @ W.T + c
                z -= z.max(axis=1, keepdims=True)
                e = np.exp(z)
                out[g, start : start + rows.shape[0]] = e / e.sum(axis=1, keepdims=True)
        return out

    def _predict_proba(self, X: Any) -> np.ndarray:
        return self._proba_groups(X)[self.best_group_]
