"""Multinomial L2 logistic regression by full-batch L-BFGS in torch, with a warm-started C sweep.

The objective is scikit-learn's ``LogisticRegression`` at the same ``C`` (see
:mod:`~diffprobe.probes.multinomial`, which also holds its exact row-space reduction for D > N).
Three things make it fast: (1) float32 on any device with class-major products; (2) the compact
L-BFGS of :mod:`~diffprobe.probes.lbfgs`, with little per-iteration overhead; (3) the row-space
reduction — a 10k-dim problem on 1k rows costs as much as a 1k-dim one.

Progress: the C sweep shows a bar over the C values (validation accuracy and loss at each), the
final fit one over L-BFGS iterations with the training loss; both are quiet when not on a TTY.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from diffprobe.device import resolve_device
from diffprobe.probes.arrays import is_in_memory, on_device, row_chunks, take_rows, to_tensor, torch_threads
from diffprobe.probes.base import ProbeBase, rng_seed
from diffprobe.probes.errors import ProbeError
from diffprobe.probes.lbfgs import StepCallback, lbfgs
from diffprobe.probes.multinomial import Problem, RowSpace, chunked_objective, dense_objective
from diffprobe.probes.splits import stratified_holdout

log = logging.getLogger(__name__)

#: Default C grid: half decades from 1e-4 to 10 (C as in scikit-learn: larger = weaker penalty).
DEFAULT_CS: tuple[float, ...] = tuple(float(f"{10 ** (e / 2):.3g}") for e in range(-8, 3))

#: Gradient tolerance of the fits along the C path (only their validation ranking is used).
PATH_TOL = 3e-4


class LogisticProbe(ProbeBase):
    """Multinomial L2 logistic regression (full-batch L-BFGS in torch) with a warm-started C sweep.

    Args:
        C: inverse L2 strength as in scikit-learn. None: choose it from ``Cs`` on a stratified
            hold-out of ``val_fraction`` of the training rows, then refit on all rows.
        Cs: the grid searched from strong to weak regularisation, each fit warm-started from the last.
        val_fraction: hold-out share used to choose C.
        patience: stop the sweep after this many Cs in a row without a better validation accuracy.
        max_iter, tol: L-BFGS iteration cap and max-abs-gradient tolerance per fit.
        device: "cpu", "cuda", "auto".
        chunk_size: rows per chunk when X is a chunked (dask/zarr/h5py) array.
        num_threads: CPU threads during the iterations; None = one for small problems (where thread
            wake-ups cost more than they save), torch's setting otherwise.
        random_state: seed of the hold-out split.
        rows_per_item: consecutive rows that are one item (its views × draws; the runner sets it):
            the hold-out keeps an item's rows together, so no item is both fitted and validated.
        standardize: map every feature to zero mean and unit variance with training statistics
            first (what the CLI does unless --no-standardize); C then applies to standardised features.

    Learned: ``coef_`` (K, D), ``intercept_`` (K,) (on standardised features when ``standardize``),
    ``C_``, ``n_iter_``, ``val_scores_`` {C: accuracy}, ``mean_`` / ``scale_`` (D,) or None.
    """

    def __init__(
        self,
        C: float | None = None,
        Cs: Sequence[float] = DEFAULT_CS,
        val_fraction: float = 0.2,
        patience: int = 3,
        max_iter: int = 1000,
        tol: float = 1e-5,
        device: str = "cpu",
        chunk_size: int = 65536,
        num_threads: int | None = None,
        random_state: int | None = 0,
        standardize: bool = True,
        rows_per_item: int = 1,
    ) -> None:
        self._keep(locals())

    # -- fitting -----------------------------------------------------------------------------------
    def _problem(self, X: Any, y: np.ndarray, rows: Tensor | None = None) -> Problem:
        """X's rows prepared for every C: ``rows`` (X already as a tensor on the device) when given."""
        dev = resolve_device(self.device)
        if rows is None:
            # On a GPU with room, even rows on disk are held on the device: L-BFGS reads them at every evaluation.
            rows = on_device(X, dev, self.chunk_size)
        if rows is None and is_in_memory(X):
            rows = to_tensor(X, dev)
        return Problem(X, y, None if rows is None else RowSpace(rows), dev)

    @staticmethod
    def _rejoined(prob: Problem, held_out: Tensor | None, fit_rows: np.ndarray, val_rows: np.ndarray, n: int) -> Tensor | None:
        """All rows, in X's order, from the fit rows ``prob`` holds on a GPU and the ``held_out`` ones:
        the refit then needs no second read (and copy) of X. None elsewhere — on the CPU an
        in-memory X is used where it is, without a copy — when the fit rows were streamed, or when
        the two parts do not make up X's ``n`` rows."""
        if prob.basis is None or prob.device.type != "cuda" or len(fit_rows) + len(val_rows) != n:
            return None
        assert held_out is not None  # None only where the fit rows were streamed (prob.basis is None: returned above)
        fit = prob.basis.X
        out = fit.new_empty((len(fit_rows) + len(val_rows), fit.shape[1]))
        out[torch.as_tensor(fit_rows, device=fit.device)] = fit
        out[torch.as_tensor(val_rows, device=fit.device)] = held_out
        return out

    def _solve(self, prob: Problem, C: float, start: Tensor | None, tol: float, callback: StepCallback | None = None) -> tuple[Tensor, int]:
        """One fit at ``C`` in ``prob``'s coordinates from ``start`` (zeros when None); returns (θ, iterations)."""
        k, width = self.classes_.size, prob.width
        theta = torch.zeros(k * width + k, device=prob.device) if start is None else start
        if prob.basis is None:
            f = chunked_objective(prob.X, prob.y, k, C, self.chunk_size, prob.device)
            res = lbfgs(f, theta, max_iter=self.max_iter, tol=tol, callback=callback)
        else:
            Z = prob.basis.Z
            f = dense_objective(Z, torch.as_tensor(prob.y, device=prob.device), k, C)
            with torch_threads(self.num_threads, Z.shape[0] * width * k if prob.device.type == "cpu" else None):
                res = lbfgs(f, theta, max_iter=self.max_iter, tol=tol, callback=callback)
        if not res.converged:
            log.warning("L-BFGS did not converge in %d iterations at C=%g; raise max_iter", self.max_iter, C)
        return res.x, res.iterations

    def _held_out_scores(self, theta: Tensor, Xv: Any, yv: Tensor, k: int, w: int) -> tuple[float, float]:
        """(accuracy, mean cross-entropy) of θ on the held-out rows ``Xv`` (M, w): a tensor, or a
        lazy array read ``chunk_size`` rows at a time; ``yv`` (M,) their encoded labels."""
        Wt, b = theta[: k * w].view(k, w), theta[k * w :]
        if isinstance(Xv, Tensor):
            logits = torch.addmm(b, Xv, Wt.T)
            return (logits.argmax(1) == yv).float().mean().item(), torch.nn.functional.cross_entropy(logits, yv).item()
        correct, loss = 0, 0.0
        for start, rows in row_chunks(Xv, self.chunk_size):
            logits = torch.addmm(b, torch.from_numpy(rows).to(theta.device), Wt.T)
            yc = yv[start : start + rows.shape[0]]
            correct += int((logits.argmax(1) == yc).sum())
            loss += float(torch.nn.functional.cross_entropy(logits, yc, reduction="sum"))
        m = max(1, int(yv.shape[0]))
        return correct / m, loss / m

    def _final(self, prob: Problem, C: float, start: Tensor | None) -> tuple[Tensor, int]:
        """The fit at ``C`` to ``tol``, with a bar of L-BFGS iterations and the training loss."""
        from tqdm.auto import tqdm

        from diffprobe.progress import bar_disabled

        with tqdm(desc=f"logistic C={C:g}", unit="it", leave=False, disable=bar_disabled()) as bar:

            def step(iteration: int, loss: float) -> None:
                bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
                bar.update()

            theta, it = self._solve(prob, C, start, self.tol, None if bar.disable else step)
            bar.refresh()  # the last iteration's loss, however fast the fit was
        return theta, it

    def _fit(self, X: Any, y: np.ndarray) -> None:
        if X.ndim != 2:
            X = X.reshape(X.shape[0], -1)
        k, d = self.classes_.size, self.n_features_in_
        if self.C is not None:
            if not self.C > 0:
                raise ProbeError(f"expected C > 0, got {self.C}")
            prob = self._problem(X, y)
            reduced, it = self._final(prob, float(self.C), None)
            theta = prob.to_full(reduced, k)
            self.C_ = float(self.C)
            self.val_scores_: dict[float, float] = {}
        else:
            theta, it = self._sweep(X, y)
        self.n_iter_ = it
        self.coef_ = theta[: k * d].view(k, d).cpu().numpy()
        self.intercept_ = theta[k * d :].cpu().numpy()

    def _sweep(self, X: Any, y: np.ndarray) -> tuple[Tensor, int]:
        """Warm-started path over ``Cs`` on a hold-out, then a refit at the best C on all rows.

        The path runs in the reduced coordinates of the fit rows. Only the ranking of validation
        accuracies matters along it, so each fit stops at a looser tolerance (:data:`PATH_TOL`, or
        10× ``tol`` if larger); the refit runs to ``tol``.
        """
        from tqdm.auto import tqdm

        from diffprobe.progress import bar_disabled

        Cs = sorted(float(c) for c in self.Cs)
        if not Cs or Cs[0] <= 0:
            raise ProbeError(f"expected a non-empty grid of positive Cs, got {list(self.Cs)}")
        k = self.classes_.size
        fit_rows, val_rows = stratified_holdout(y, self.val_fraction, rng_seed(self.random_state), self.rows_per_item)
        prob = self._problem(take_rows(X, fit_rows), y[fit_rows])
        # Rows the fit streams (on disk, too many to hold) leave the held-out rows on disk too: each C
        # reads them once more, where holding them would cost val_fraction of X in memory.
        held_out = None if prob.basis is None and not is_in_memory(X) else to_tensor(take_rows(X, val_rows), prob.device)
        Xv = take_rows(X, val_rows) if held_out is None else prob.basis.project(held_out) if prob.basis is not None else held_out
        yv = torch.as_tensor(y[val_rows], device=prob.device)
        w = prob.width
        path_tol = max(10 * self.tol, PATH_TOL)
        theta = None
        best: tuple[float, float, float, Tensor] | None = None
        scores: dict[float, float] = {}
        since_best = 0
        with tqdm(total=len(Cs), desc="logistic C sweep", unit="C", leave=False, disable=bar_disabled()) as bar:
            for C in Cs:
                theta, it = self._solve(prob, C, theta, path_tol)
                acc, loss = self._held_out_scores(theta, Xv, yv, k, w)
                scores[C] = acc
                bar.set_postfix({"C": f"{C:g}", "val_loss": f"{loss:.4f}", "val_acc": f"{100 * acc:.1f}%", "iterations": it}, refresh=False)
                bar.update()
                log.debug("C=%g: val accuracy %.4f, loss %.4f (%d iterations)", C, acc, loss, it)
                if best is None or (acc, -loss) > (best[0], -best[1]):
                    best, since_best = (acc, loss, C, theta), 0
                else:
                    since_best += 1
                    if since_best >= self.patience:
                        break
            bar.refresh()
        assert best is not None
        self.C_, self.val_scores_ = best[2], scores
        final = self._problem(X, y, self._rejoined(prob, held_out, fit_rows, val_rows, len(y)))
        reduced, it = self._final(final, best[2], final.to_reduced(prob.to_full(best[3], k), k))
        return final.to_full(reduced, k), it

    # -- prediction --------------------------------------------------------------------------------
    def decision_function(self, X: Any) -> np.ndarray:
        """Logits (N, K) of raw X (N, D) (standardised here when the probe standardises); for two
        classes, as scikit-learn's classifiers give it, the (N,) margin of ``classes_[1]`` over ``classes_[0]``."""
        z = self._logits(self._standardized(self._checked(X)))
        return z[:, 1] - z[:, 0] if z.shape[1] == 2 else z

    def _logits(self, X: Any) -> np.ndarray:
        if X.ndim != 2:
            X = X.reshape(X.shape[0], -1)
        out = [rows @ self.coef_.T + self.intercept_ for _, rows in row_chunks(X, self.chunk_size)]
        return np.concatenate(out) if out else np.zeros((0, self.classes_.size), np.float32)

    def _predict_proba(self, X: Any) -> np.ndarray:
        z = self._logits(X)
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)
