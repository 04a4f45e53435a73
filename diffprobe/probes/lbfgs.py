"""A compact L-BFGS for smooth convex objectives on one flat torch vector.

Why not ``torch.optim.LBFGS``: for the small, many-times-repeated problems of a probe sweep its
per-iteration Python overhead (parameter clones, a two-loop recursion of 2m tiny ops, a generic
strong-Wolfe search) costs more than the objective itself. Here the inverse-Hessian product uses the
compact representation of Byrd, Nocedal & Schnabel (1994; Nocedal & Wright eq. 7.24) — a handful of
(m × P) matmuls — and the step is chosen by Armijo backtracking from 1, which is enough because the
objective is strictly convex (so yᵀs > 0 always holds and the curvature pairs stay valid).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

FlatObjective = Callable[[Tensor], tuple[Tensor, Tensor]]
#: Called after every iteration with (iterations so far, loss): progress display.
StepCallback = Callable[[int, float], None]


@dataclass(frozen=True)
class LBFGSResult:
    x: Tensor
    loss: float
    iterations: int
    evaluations: int
    converged: bool


def _direction(g: Tensor, S: list[Tensor], Y: list[Tensor]) -> Tensor:
    """−H·g with H the L-BFGS inverse-Hessian approximation from pairs (s_i, y_i), oldest first."""
    if not S:
        return -g
    Sm, Ym = torch.stack(S), torch.stack(Y)  # (m, P)
    sy = Sm @ Ym.T  # (m, m): s_iᵀ y_j
    gamma = sy[-1, -1] / (Ym[-1] @ Ym[-1])
    R = torch.triu(sy)
    Dg = torch.diag(torch.diagonal(sy))
    p1 = Sm @ g
    p2 = gamma * (Ym @ g)
    t = torch.linalg.solve_triangular(R, p1[:, None], upper=True)
    inner = (Dg + gamma * (Ym @ Ym.T)) @ t - p2[:, None]
    u1 = torch.linalg.solve_triangular(R.T, inner, upper=False)[:, 0]
    u2 = -t[:, 0]
    return -(gamma * g + u1 @ Sm + gamma * (u2 @ Ym))


def lbfgs(
    f: FlatObjective,
    x0: Tensor,
    *,
    max_iter: int = 1000,
    tol: float = 1e-5,
    history: int = 20,
    ftol: float = 1e-9,
    max_backtracks: int = 30,
    callback: StepCallback | None = None,
) -> LBFGSResult:
    """Minimise a strictly convex ``f(x) -> (loss, grad)`` from ``x0`` (P,).

    Stops when max|grad| ≤ ``tol``, when the relative decrease of the loss
    falls below ``ftol``, or when no step decreases the loss (float32 resolution reached).
    ``callback(iteration, loss)`` runs after every iteration (each one already reads the loss on
    the host for the stopping test, so it costs no extra device sync).
    """
    x = x0.clone()
    loss, g = f(x)
    evals = 1
    S: list[Tensor] = []
    Y: list[Tensor] = []
    it = 0
    converged = bool(g.abs().max() <= tol)
    while not converged and it < max_iter:
        d = _direction(g, S, Y)
        gd = g @ d
        if gd >= 0:  # lost descent through rounding: restart from steepest descent
            S.clear()
            Y.clear()
            d, gd = -g, -(g @ g)
        step = 1.0 if S else min(1.0, 1.0 / float(g.abs().sum()))
        for _ in range(max_backtracks):
            x_new = x + step * d
            loss_new, g_new = f(x_new)
            evals += 1
            if loss_new <= loss + 1e-4 * step * gd:
                break
            step *= 0.5
        else:
            break  # no decrease representable: as converged as float32 allows
        s, y = x_new - x, g_new - g
        if s @ y > 1e-10 * (y @ y):
            S.append(s)
            Y.append(y)
            if len(S) > history:
                S.pop(0)
                Y.pop(0)
        decrease = float(loss - loss_new)
        x, loss, g = x_new, loss_new, g_new
        it += 1
        if callback is not None:
            callback(it, float(loss))
        converged = bool(g.abs().max() <= tol) or decrease <= ftol * max(1.0, abs(float(loss)))
    return LBFGSResult(x, float(loss), it, evals, converged)
