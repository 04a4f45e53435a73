"""The multinomial L2 logistic objective of :class:`~diffprobe.probes.logistic.LogisticProbe`, and
its exact reduction to the row space of X. Pure math on tensors; no fitting policy.

Objective (scikit-learn's ``LogisticRegression`` with the same ``C``, so the optimum is the same):

    f(W, b) = (1/N) Σ_i [logsumexp(W x_i + b) − (W x_i + b)_{y_i}] + ‖W‖² / (2 C N)

with W (K, D) and the intercept b unpenalised. The gradient is written out
(∂f/∂W = (P − Y)ᵀ X / N + W / (C N)) rather than taken by autograd, in float32 with class-major
products (W Xᵀ and Gᵀ X are 4–7× faster than X W and Xᵀ G for a few classes).

When D > N the optimum lies in the row space of X (∂f/∂W = 0 gives W = −C·(P − Y)ᵀ X), so with
X = U S Vᵀ the problem is solved exactly on Z = U S (N × r) and mapped back with W = B Vᵀ — a
10k-dim problem on 1k rows costs as much as a 1k-dim one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from diffprobe.probes.arrays import row_chunks, torch_threads

Objective = Callable[[Tensor], tuple[Tensor, Tensor]]


def _loss_grad(X: Tensor, onehot_t: Tensor, Wt: Tensor, b: Tensor, n: int) -> tuple[Tensor, Tensor, Tensor]:
    """Σ-CE / n and its gradients for rows X (B, D), targets (K, B), W (K, D): class-major throughout."""
    logits = torch.addmm(b[:, None], Wt, X.T)  # (K, B)
    lse = torch.logsumexp(logits, dim=0)
    loss = (lse.sum() - (logits * onehot_t).sum()) / n
    g = (torch.exp(logits - lse) - onehot_t) / n  # (K, B)
    return loss, g @ X, g.sum(1)


def dense_objective(X: Tensor, y: Tensor, n_classes: int, C: float) -> Objective:
    """f(θ) → (loss, ∇f) with θ = [vec W (K·D), b (K)] for an in-memory X (N, D) and labels y (N,)."""
    n, d = X.shape
    onehot_t = torch.nn.functional.one_hot(y, n_classes).to(X.dtype).T.contiguous()
    lam = 1.0 / (C * n)
    k = n_classes

    def f(theta: Tensor) -> tuple[Tensor, Tensor]:
        Wt, b = theta[: k * d].view(k, d), theta[k * d :]
        loss, gW, gb = _loss_grad(X, onehot_t, Wt, b, n)
        loss = loss + 0.5 * lam * Wt.pow(2).sum()
        return loss, torch.cat([(gW + lam * Wt).reshape(-1), gb])

    return f


def chunked_objective(X: Any, y: np.ndarray, n_classes: int, C: float, chunk: int, device: torch.device) -> Objective:
    """The same objective for a chunked array: every evaluation streams X once, ``chunk`` rows at a time."""
    n, d = X.shape
    k = n_classes
    lam = 1.0 / (C * n)
    yt = torch.as_tensor(y, device=device)

    def f(theta: Tensor) -> tuple[Tensor, Tensor]:
        Wt, b = theta[: k * d].view(k, d), theta[k * d :]
        loss = 0.5 * lam * Wt.pow(2).sum()
        gW, gb = lam * Wt, torch.zeros_like(b)
        for start, rows in row_chunks(X, chunk):
            xc = torch.from_numpy(rows).to(device)
            oh = torch.nn.functional.one_hot(yt[start : start + xc.shape[0]], k).to(xc.dtype).T
            lc, gWc, gbc = _loss_grad(xc, oh, Wt, b, n)
            loss, gW, gb = loss + lc, gW + gWc, gb + gbc
        return loss, torch.cat([gW.reshape(-1), gb])

    return f


class RowSpace:
    """Exact reduction of an in-memory X (N, D) to its row space when D > N (see module docstring).

    With X Xᵀ = U S² Uᵀ the reduced rows are Z = U S (N, r), and a reduced weight B (K, r) stands for
    W = B Vᵀ = B S⁻¹ Uᵀ X; V = Xᵀ U S⁻¹ (D, r) is never formed, only products with it.
    """

    #: The N×N eigendecomposition pays for itself when D > MIN_RATIO·N and N ≤ MAX_ROWS.
    MIN_RATIO = 1.0
    MAX_ROWS = 4096

    def __init__(self, X: Tensor) -> None:
        n, d = X.shape
        self.X = X
        self.U: Tensor | None = None
        self.Z = X
        if d <= self.MIN_RATIO * n or n > self.MAX_ROWS:
            return
        gram = (X @ X.T).double()
        # One thread: a threaded LAPACK eigh of this size gains little when idle and loses 10-100×
        # when another process holds a core (its threads wait on each other at every sweep).
        with torch_threads(1):
            evals, evecs = torch.linalg.eigh(gram)
        # Directions with σ² below 1e-8·σ²_max carry no usable signal in float32.
        keep = evals > evals.max().clamp_min(1e-30) * 1e-8
        self.s = evals[keep].sqrt().to(X.dtype)
        self.U = evecs[:, keep].to(X.dtype)
        self.Z = self.U * self.s

    def project(self, rows: Tensor) -> Tensor:
        """Rows (M, D) in reduced coordinates, rows · V (M, r); also maps W (K, D) to B."""
        return rows if self.U is None else (rows @ self.X.T) @ self.U / self.s

    def expand(self, Bt: Tensor) -> Tensor:
        """B (K, r) → W = B S⁻¹ Uᵀ X (K, D)."""
        return Bt if self.U is None else ((Bt / self.s) @ self.U.T) @ self.X


@dataclass
class Problem:
    """Training rows prepared once for every C: the data and its row-space basis (None when chunked)."""

    X: Any
    y: np.ndarray
    basis: RowSpace | None
    device: torch.device

    @property
    def width(self) -> int:
        return int(self.X.shape[1]) if self.basis is None else int(self.basis.Z.shape[1])

    def to_reduced(self, theta: Tensor, k: int) -> Tensor:
        """θ = [vec W (K·D), b] → the same model in this problem's coordinates."""
        if self.basis is None:
            return theta
        d = int(self.X.shape[1])
        return torch.cat([self.basis.project(theta[: k * d].view(k, d)).reshape(-1), theta[k * d :]])

    def to_full(self, reduced: Tensor, k: int) -> Tensor:
        """Inverse of :meth:`to_reduced`."""
        if self.basis is None:
            return reduced
        r = self.width
        return torch.cat([self.basis.expand(reduced[: k * r].view(k, r)).reshape(-1), reduced[k * r :]])
