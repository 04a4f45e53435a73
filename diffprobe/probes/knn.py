"""Cosine k-nearest-neighbour probe with temperature-weighted votes (as in DINO's k-NN evaluation).

Each query's k most similar training rows vote for their class with weight exp(s / T), s the cosine
similarity; probabilities are the normalised votes. Queries and the training bank are both processed
in chunks, keeping a running top-k, so neither needs to fit in memory at once.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from diffprobe.device import resolve_device
from diffprobe.probes.arrays import is_in_memory, row_chunks, to_tensor
from diffprobe.probes.base import ProbeBase
from diffprobe.probes.errors import ProbeError


def _normalise(x: Tensor) -> Tensor:
    return torch.nn.functional.normalize(x, dim=1, eps=1e-12)


class KNNProbe(ProbeBase):
    """Cosine k-NN classifier.

    Args:
        k: neighbours per query (capped at the number of training rows).
        temperature: T in the vote weight exp(s / T); small T approaches a majority of the closest.
        chunk_size: rows per chunk of queries and of the bank.
        device: "cpu", "cuda" or "auto".
        standardize: standardise every feature with training statistics before the cosine
            similarities (what the CLI does unless --no-standardize).

    Learned: ``bank_`` (N, D) L2-normalised training rows (kept as given when the input was a
    chunked array, normalised chunk by chunk at query time), ``bank_labels_`` (N,),
    ``mean_`` / ``scale_`` (D,) or None.
    """

    def __init__(
        self, k: int = 20, temperature: float = 0.07, chunk_size: int = 4096, device: str = "cpu", standardize: bool = True
    ) -> None:
        self._keep(locals())

    def _fit(self, X: Any, y: np.ndarray) -> None:
        if self.k < 1 or not self.temperature > 0:
            raise ProbeError(f"expected k ≥ 1 and temperature > 0, got k={self.k}, temperature={self.temperature}")
        if X.ndim != 2:
            X = X.reshape(X.shape[0], -1)
        self.bank_ = _normalise(to_tensor(X)).numpy() if is_in_memory(X) else X
        self.bank_labels_ = y

    def _bank_chunks(self, dev: torch.device) -> Any:
        if is_in_memory(self.bank_):
            bank = torch.from_numpy(np.asarray(self.bank_, dtype=np.float32)).to(dev)
            for s in range(0, bank.shape[0], self.chunk_size):
                yield s, bank[s : s + self.chunk_size]
            return
        for s, rows in row_chunks(self.bank_, self.chunk_size):
            yield s, _normalise(torch.from_numpy(rows).to(dev))

    def _predict_proba(self, X: Any) -> np.ndarray:
        if X.ndim != 2:
            X = X.reshape(X.shape[0], -1)
        dev = resolve_device(self.device)
        labels = torch.as_tensor(self.bank_labels_, device=dev)
        k = min(self.k, labels.numel())
        n_classes = self.classes_.size
        out = np.empty((X.shape[0], n_classes), dtype=np.float32)
        for qs, rows in row_chunks(X, self.chunk_size):
            q = _normalise(torch.from_numpy(rows).to(dev))
            best_s = torch.full((q.shape[0], 0), -2.0, device=dev)
            best_i = torch.zeros((q.shape[0], 0), dtype=torch.long, device=dev)
            for bs, bank in self._bank_chunks(dev):
                sims = q @ bank.T
                top = sims.topk(min(k, sims.shape[1]), dim=1)
                cand_s = torch.cat([best_s, top.values], dim=1)
                cand_i = torch.cat([best_i, top.indices + bs], dim=1)
                keep = cand_s.topk(min(k, cand_s.shape[1]), dim=1)
                best_s, best_i = keep.values, cand_i.gather(1, keep.indices)
            weights = torch.exp((best_s - 1.0) / self.temperature)  # shift by the max possible s: no overflow
            votes = torch.zeros(q.shape[0], n_classes, device=dev)
            votes.scatter_add_(1, labels[best_i], weights)
            out[qs : qs + q.shape[0]] = (votes / votes.sum(1, keepdim=True).clamp_min(1e-30)).cpu().numpy()
        return out
