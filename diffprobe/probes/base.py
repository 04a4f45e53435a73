"""The scikit-learn estimator plumbing shared by every probe.

Probes follow the estimator contract: ``__init__`` only stores hyper-parameters (so ``clone`` and
grid search work), ``fit`` returns ``self``, learned attributes end in ``_``, ``predict_proba`` /
``predict`` / ``score`` come from here. Subclasses implement ``_fit(X, y)`` with ``y`` encoded as
0..K-1 and ``_predict_proba(X)``.

Standardisation happens here, once, for every probe (and so for the CLI, which only sets the
``standardize`` parameter): with ``standardize=True`` ``fit`` learns each feature's mean and scale
on its training rows (streamed for lazy arrays, see :class:`Standardizer`), keeps them as ``mean_``
and ``scale_`` (D,), and every later input is mapped x ↦ (x − mean_) / scale_ before the hooks see it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from diffprobe.probes.errors import LabelError, ProbeError
from diffprobe.probes.standardize import Standardizer


class ProbeBase(ClassifierMixin, BaseEstimator):
    """Base class: label encoding, input checks and the public predict API."""

    #: True when the probe needs spatial maps; X is then (N, D) flat with ``input_shapes`` given, or (N, C, H, W).
    spatial: bool = False

    def fit(self, X: Any, y: Any) -> ProbeBase:
        """Train on ``X`` (N, D) — or (N, C, H, W), flattened by vector probes — and labels ``y`` (N,)."""
        y = np.asarray(y)
        if y.ndim != 1 or y.shape[0] != X.shape[0]:
            raise ProbeError(f"expected one label per row of X ({X.shape[0]}), got labels of shape {y.shape}")
        if X.shape[0] == 0:
            raise ProbeError("expected at least one training row, got an empty X")
        classes, y_enc = np.unique(y, return_inverse=True)
        if classes.size < 2:
            raise LabelError(f"expected at least 2 classes in the training labels, got {classes.tolist()}")
        self.classes_ = classes
        self.n_features_in_ = int(np.prod(X.shape[1:]))
        self.mean_: np.ndarray | None = None
        self.scale_: np.ndarray | None = None
        if getattr(self, "standardize", False):
            std = Standardizer.fit(X)
            self.mean_, self.scale_ = std.mean, std.scale
        self._fit(self._standardized(X), y_enc.astype(np.int64))
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities (N, K), columns in the order of ``classes_``."""
        check_is_fitted(self, "classes_")
        d = int(np.prod(X.shape[1:]))
        if d != self.n_features_in_:
            raise ProbeError(f"expected {self.n_features_in_} features per row (as in fit), got {d}")
        return self._predict_proba(self._standardized(X))

    def predict(self, X: Any) -> np.ndarray:
        """Predicted labels (N,)."""
        proba = self.predict_proba(X)
        return self.classes_[proba.argmax(axis=1)]

    def _standardized(self, X: Any) -> Any:
        """X (N, D) or (N, ...) mapped with the training statistics; X itself when not standardising."""
        mean = getattr(self, "mean_", None)
        if mean is None:
            return X
        return Standardizer(mean, self.scale_).transform(X)  # type: ignore[arg-type]

    def _keep(self, params: dict[str, Any]) -> None:
        """Store ``__init__``'s arguments (pass ``locals()``) as attributes of the same names, unchanged:
        scikit-learn's estimator contract, which ``get_params``/``clone`` rely on."""
        for name, value in params.items():
            if name not in ("self", "__class__"):
                setattr(self, name, value)

    # -- hooks -------------------------------------------------------------------------------------
    def _fit(self, X: Any, y: np.ndarray) -> None:
        raise NotImplementedError

    def _predict_proba(self, X: Any) -> np.ndarray:
        raise NotImplementedError

    def _build_modules(self) -> None:
        """Recreate learned ``nn.Module`` attributes from the other learned attributes (for loading)."""


@contextlib.contextmanager
def seeded(seed: int | None) -> Iterator[None]:
    """Run the block with torch's global CPU RNG seeded, restoring the caller's RNG state after.

    Module initialisers use the global generator; forking it keeps ``random_state`` reproducible
    without changing anyone else's random stream.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0 if seed is None else int(seed))
        yield


def rng_seed(random_state: int | None) -> int:
    """An integer seed from ``random_state`` (None means 0: probes are deterministic by default)."""
    if random_state is None:
        return 0
    if isinstance(random_state, (int, np.integer)):
        return int(random_state)
    raise ProbeError(f"expected random_state to be an int or None, got {random_state!r}")
