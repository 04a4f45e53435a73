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


def check_input(X: Any, who: str, fitting: bool = False) -> Any:
    """X as a probe reads it: arrays (numpy, or lazy arrays with a shape: dask, zarr, h5py) pass as
    they are; anything else array-like becomes numpy. Refuses, saying what to do: sparse matrices,
    complex numbers, one-dimensional X, no features, too few rows to fit, NaN/Inf in an in-memory X.

    Raises:
        ProbeError (a ValueError): any of the above.
    """
    if hasattr(X, "toarray") and hasattr(X, "nnz"):
        raise ProbeError(f"{who} does not take sparse input (a sparse matrix or array): pass X.toarray()")
    if not hasattr(X, "shape") or not hasattr(X, "dtype"):
        X = np.asarray(X)
    if np.issubdtype(X.dtype, np.complexfloating):
        raise ProbeError(f"{who}: Complex data not supported; pass real features")
    if len(X.shape) < 2:
        raise ProbeError(f"{who} expects a 2D array (N, D) or maps (N, C, H, W), got shape {tuple(X.shape)}. Reshape your data "
                         "with X.reshape(-1, 1) for one feature or X.reshape(1, -1) for one sample")  # fmt: skip
    d = int(np.prod(X.shape[1:]))
    if d == 0:
        raise ProbeError(f"{who}: 0 feature(s) (shape={tuple(X.shape)}) while a minimum of 1 is required.")
    if fitting and X.shape[0] < 2:
        raise ProbeError(f"{who} needs at least 2 training rows, got {X.shape[0]} (n_samples = {X.shape[0]}); 1 sample cannot be split by class")
    if isinstance(X, np.ndarray):
        if X.dtype == object:
            X = X.astype(np.float64)
        if np.issubdtype(X.dtype, np.floating) and not all(np.isfinite(X[s : s + 65536]).all() for s in range(0, X.shape[0], 65536)):
            raise ProbeError(f"{who}: Input X contains NaN or infinity; remove or impute those rows (stored features mark them invalid)")
    return X


def check_labels(y: Any, n: int, who: str) -> np.ndarray:
    """y as a probe reads it: (N,) class labels; a column vector (N, 1) is flattened. Refuses a missing
    y, a continuous target, or a count that differs from X's rows.

    Raises:
        ProbeError (a ValueError): any of the above.
    """
    if y is None:
        raise ProbeError(f"{who} requires y to be passed, but the target y is None")
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        import warnings

        from sklearn.exceptions import DataConversionWarning

        warnings.warn("A column-vector y was passed when a 1d array was expected; it is flattened", DataConversionWarning, stacklevel=3)
        y = y.ravel()
    if y.ndim != 1 or y.shape[0] != n:
        raise ProbeError(f"expected one label per row of X ({n}), got labels of shape {y.shape}")
    if np.issubdtype(y.dtype, np.floating) and not np.all(np.mod(y[np.isfinite(y)], 1) == 0):
        raise ProbeError(f"Unknown label type: continuous. {who} is a classifier: pass class labels (integers or names)")
    return y


#: Non-negative integer labels below this are encoded by counting (no sort of the N labels).
COUNTED_LABELS = 1 << 20


def encode_labels(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(classes (K,) sorted, y_enc (N,) int64 in [0, K)): ``np.unique(y, return_inverse=True)``.

    Non-negative integer labels below :data:`COUNTED_LABELS` (class ids) are counted instead of
    sorted: 1.28M labels then take one int64 array, where a sort holds four.
    """
    if y.dtype.kind in "iu" and y.size and int(y.min()) >= 0 and int(y.max()) < COUNTED_LABELS:
        classes = np.flatnonzero(np.bincount(y)).astype(y.dtype)
        code = np.zeros(int(classes[-1]) + 1, dtype=np.int64)
        code[classes] = np.arange(classes.size)
        return classes, code[y]
    classes, y_enc = np.unique(y, return_inverse=True)
    return classes, y_enc.astype(np.int64, copy=False)


class ProbeBase(ClassifierMixin, BaseEstimator):
    """Base class: label encoding, input checks and the public predict API."""

    #: True when the probe needs spatial maps; X is then (N, D) flat with ``input_shapes`` given, or (N, C, H, W).
    spatial: bool = False
    #: False for probes whose X is not a feature array (DifFeed's images): :func:`check_input` is theirs to do.
    takes_features: bool = True

    def fit(self, X: Any, y: Any = None) -> ProbeBase:
        """Train on ``X`` (N, D) — or (N, C, H, W), flattened by vector probes — and labels ``y`` (N,)."""
        if self.takes_features:
            X = check_input(X, type(self).__name__, fitting=True)
        y = check_labels(y, X.shape[0], type(self).__name__)
        classes, y_enc = encode_labels(y)
        if classes.size < 2:
            raise LabelError(f"expected at least 2 classes in the training labels, got {classes.tolist()}")
        self.classes_ = classes
        self.n_features_in_ = int(np.prod(X.shape[1:]))
        self.mean_: np.ndarray | None = None
        self.scale_: np.ndarray | None = None
        if getattr(self, "standardize", False):
            std = Standardizer.fit(X)
            self.mean_, self.scale_ = std.mean, std.scale
        self._fit(self._standardized(X), y_enc)
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities (N, K), columns in the order of ``classes_``."""
        return self._predict_proba(self._standardized(self._checked(X)))

    def _checked(self, X: Any) -> Any:
        """X for a fitted probe: :func:`check_input`, and as many features as in fit."""
        check_is_fitted(self, "classes_")
        if not self.takes_features:
            return X
        X = check_input(X, type(self).__name__)
        d = int(np.prod(X.shape[1:]))
        if d != self.n_features_in_:
            raise ProbeError(f"X has {d} features, but {type(self).__name__} is expecting {self.n_features_in_} features as input "
                             "(as in fit)")  # fmt: skip
        return X

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
