"""Estimators for the paper's attention head and DifFormer fusion, trained on cached spatial maps.

X is (N, C·H·W) flat features with the map shape(s) given as parameters (what the data layer
produces when it concatenates store keys), or (N, C, H, W) for a single map, whose shape is then
inferred. Defaults are the paper's recipe: D = 1024, 8 heads, depth 2, MLP ratio 4, plain SGD at
lr 5e-2 for 28 epochs with lr × 0.1 every 7. On CPU pick a smaller ``dim`` and ``epochs``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from torch import nn

from diffprobe.device import resolve_device
from diffprobe.probes.base import ProbeBase, seeded
from diffprobe.probes.errors import ProbeError
from diffprobe.probes.heads import AttentionHead, DifFormerHead, Shape, Tokenizer
from diffprobe.probes.optim import TrainConfig
from diffprobe.probes.training import predict_module, train_module


class _TransformerProbe(ProbeBase):
    """Shared fit/predict for the transformer heads; subclasses build the module."""

    spatial = True

    def _make(self) -> nn.Module:
        raise NotImplementedError

    def _config(self) -> TrainConfig:
        return TrainConfig.of(self)

    def _build_modules(self) -> None:
        self.module_ = self._make().to(resolve_device(self.device))

    def _fit(self, X: Any, y: np.ndarray) -> None:
        self._set_layout(X)
        cfg = self._config()
        with seeded(cfg.seed):
            self.module_ = self._make()
        dev = resolve_device(self.device)
        self.module_.to(dev)
        flat = X.reshape(X.shape[0], -1) if X.ndim != 2 else X
        params = list(self.module_.parameters())
        work = cfg.batch_size * sum(p.numel() for p in params) * self._n_tokens()
        self.loss_history_ = train_module(
            self.module_, [{"params": params}], flat, y, cfg, nn.functional.cross_entropy, dev, work, desc=type(self).__name__
        )

    def _predict_proba(self, X: Any) -> np.ndarray:
        flat = X.reshape(X.shape[0], -1) if X.ndim != 2 else X
        return predict_module(self.module_, flat, max(self.batch_size, 256), resolve_device(self.device), self.amp)

    def _set_layout(self, X: Any) -> None:
        raise NotImplementedError

    def _n_tokens(self) -> int:
        """Tokens per sequence (for the CPU thread choice)."""
        return sum(m.size[0] * m.size[1] for m in self.module_.modules() if isinstance(m, Tokenizer)) + 1


def _shape_of(X: Any, given: Sequence[int] | None) -> Shape:
    if given is not None:
        shape = tuple(int(v) for v in given)
        if len(shape) != 3 or int(np.prod(shape)) != int(np.prod(X.shape[1:])):
            raise ProbeError(f"expected input_shape (C, H, W) with C·H·W = {int(np.prod(X.shape[1:]))}, got {given}")
        return shape  # type: ignore[return-value]
    if X.ndim == 4:
        return tuple(int(v) for v in X.shape[1:])  # type: ignore[return-value]
    if X.ndim == 2:  # vectors: a 1×1 map of D channels (one token)
        return (int(X.shape[1]), 1, 1)
    raise ProbeError(f"expected X of shape (N, C, H, W), or (N, D) (a 1×1 map, or with input_shape=(C, H, W)); got {tuple(X.shape)}")


class AttentionProbe(_TransformerProbe):
    """The paper's attention head (tokenizer → CLS + pre-norm transformer → linear on CLS).

    Args:
        input_shape: (C, H, W) of the map when X is flat; inferred from a 4-D X.
        dim, heads, depth, mlp_ratio: transformer size (paper: 1024, 8, 2, 4).
        max_size: the tokenizer pools maps larger than this to max_size × max_size (paper: 16).
        optimizer, lr, momentum, weight_decay, epochs, batch_size, schedule: see ``TrainConfig``
            (paper: "sgd", 5e-2, 0, 0, 28, 128, "step"; "adamw" with lr ≈ 1e-3 also works well).
        device: "auto" (CUDA if present), "cpu" or "cuda". amp: bfloat16 autocast on CUDA only.
        standardize: standardise every feature (each map position) with training statistics first,
            as the CLI does unless --no-standardize.

    Learned: ``module_`` (the trained :class:`AttentionHead`), ``input_shape_``, ``loss_history_``
    (mean loss per epoch), ``mean_`` / ``scale_`` (D,) or None.
    """

    def __init__(
        self,
        input_shape: Sequence[int] | None = None,
        dim: int = 1024,
        heads: int = 8,
        depth: int = 2,
        mlp_ratio: float = 4.0,
        max_size: int = 16,
        optimizer: str = "sgd",
        lr: float = 5e-2,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        epochs: int = 28,
        batch_size: int = 128,
        schedule: str = "step",
        device: str = "auto",
        amp: bool = True,
        chunk_size: int = 16384,
        random_state: int | None = 0,
        standardize: bool = True,
    ) -> None:
        self._keep(locals())

    def _set_layout(self, X: Any) -> None:
        self.input_shape_ = _shape_of(X, self.input_shape)

    def _make(self) -> nn.Module:
        return AttentionHead(
            self.input_shape_, self.classes_.size, self.dim, self.heads, self.depth, self.mlp_ratio, self.max_size
        )


class DifFormerProbe(_TransformerProbe):
    """DifFormer: per-block tokenizers, one shared transformer per timestep, concatenated CLS → linear.

    Args:
        input_shapes: (C, H, W) of each concatenated input, in column order.
        input_times: timestep of each input (inputs with the same t are fused in one sequence).
        input_blocks: block of each input (same block ⇒ same tokenizer across timesteps).
        Other arguments as :class:`AttentionProbe`.

    The data layer fills the three ``input_*`` parameters from the store keys.
    Learned: ``module_`` (:class:`DifFormerHead`), ``layout_`` (shapes, times, blocks), ``loss_history_``,
    ``mean_`` / ``scale_`` (D,) or None.
    """

    # Declared boilerplate: scikit-learn's estimator contract spells every hyper-parameter out in
    # __init__ (get_params reads the signature), so the two heads repeat the ones they share.
    def __init__(
        self,
        input_shapes: Sequence[Sequence[int]] | None = None,
        input_times: Sequence[int] | None = None,
        input_blocks: Sequence[int] | None = None,
        dim: int = 1024,
        heads: int = 8,
        depth: int = 2,
        mlp_ratio: float = 4.0,
        max_size: int = 16,
        optimizer: str = "sgd",
        lr: float = 5e-2,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        epochs: int = 28,
        batch_size: int = 128,
        schedule: str = "step",
        device: str = "auto",
        amp: bool = True,
        chunk_size: int = 16384,
        random_state: int | None = 0,
        standardize: bool = True,
    ) -> None:
        self._keep(locals())

    def _set_layout(self, X: Any) -> None:
        if self.input_shapes is None:
            shapes = [_shape_of(X, None)]
        else:
            shapes = [(int(s[0]), int(s[1]), int(s[2])) for s in self.input_shapes]
        n = len(shapes)
        times = [0] * n if self.input_times is None else [int(t) for t in self.input_times]
        blocks = list(range(n)) if self.input_blocks is None else [int(b) for b in self.input_blocks]
        if len(times) != n or len(blocks) != n:
            raise ProbeError(f"expected {n} input_times and input_blocks (one per input shape), got {len(times)} and {len(blocks)}")
        total = sum(int(np.prod(s)) for s in shapes)
        if total != int(np.prod(X.shape[1:])):
            raise ProbeError(f"expected X with {total} features (Σ C·H·W of input_shapes), got {int(np.prod(X.shape[1:]))}")
        self.layout_: dict[str, Any] = {"shapes": [list(s) for s in shapes], "times": times, "blocks": blocks}

    def _make(self) -> nn.Module:
        lay = self.layout_
        return DifFormerHead(
            [(s[0], s[1], s[2]) for s in lay["shapes"]], lay["times"], lay["blocks"], self.classes_.size,
            self.dim, self.heads, self.depth, self.mlp_ratio, self.max_size,
        )
