"""SVCCA, PWCCA and the Procrustes distance over row sources, from streamed moments.

One :func:`~diffprobe.pipelines.similarity.moments.moments_pass` per source gives its mean and
scatter; CCA whitens each source once (:func:`~diffprobe.pipelines.similarity.math.whitening`) and
the cross passes accumulate the whitened cross scatter C = Wₐᵀ S_ab W_b directly, so a pair costs
(k_a, k_b) floats; Procrustes accumulates X̃ᵀỸ (D_a, D_b). The finishing functions are the ones the
in-memory metrics use. Exact: streamed values equal the in-memory ones to float64 rounding.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from diffprobe.pipelines.cka.source import Source
from diffprobe.pipelines.similarity.config import SimilarityConfig
from diffprobe.pipelines.similarity.math.cca import Whitening, check_dims, pwcca, pwcca_value, svcca, svcca_value, whitening
from diffprobe.pipelines.similarity.math.checks import check_items
from diffprobe.pipelines.similarity.math.procrustes import procrustes, procrustes_from
from diffprobe.pipelines.similarity.metrics import Facts, Metric, Pair, StreamFn
from diffprobe.pipelines.similarity.moments import Projection, cross_passes, moments_pass
from diffprobe.pipelines.similarity.read import read_rows


def _keys(pairs: Sequence[Pair]) -> list[int]:
    return sorted({k for p in pairs for k in p})


def _cca(pw: bool) -> StreamFn:
    def run(sources: Sequence[Source], pairs: Sequence[Pair], cfg: SimilarityConfig, device: torch.device) -> tuple[dict[Pair, float], Facts]:
        variance = 1.0 if pw else cfg.variance
        white: dict[int, Whitening] = {}
        proj: dict[int, Projection] = {}
        for k in _keys(pairs):
            src = sources[k]
            check_items(src.n, 2, "CCA")
            m = moments_pass(src, read_rows([src], cfg), device, full=True)
            white[k] = whitening(m, variance, cfg.ridge, src.label)
            proj[k] = Projection(m.mean, white[k].w)
        n = sources[0].n
        for a, b in pairs:
            check_dims(n, white[a].kept, white[b].kept, cfg.ridge)
        cross, passes = cross_passes(sources, proj, pairs, cfg, device)
        values = {p: pwcca_value(white[p[0]], c) if pw else svcca_value(c) for p, c in cross.items()}
        facts = {"kept_dims": {sources[k].label: w.kept for k, w in white.items()}, "passes": passes + len(white)}
        return values, facts

    return run


def _procrustes(sources: Sequence[Source], pairs: Sequence[Pair], cfg: SimilarityConfig, device: torch.device) -> tuple[dict[Pair, float], Facts]:
    moments = {k: moments_pass(sources[k], read_rows([sources[k]], cfg), device, full=False) for k in _keys(pairs)}
    proj = {k: Projection(m.mean, None) for k, m in moments.items()}
    cross, passes = cross_passes(sources, proj, pairs, cfg, device)
    n = sources[0].n
    values = {(a, b): procrustes_from(c, moments[a].sumsq, moments[b].sumsq, n, (sources[a].label, sources[b].label))
              for (a, b), c in cross.items()}  # fmt: skip
    return values, {"passes": passes + len(moments)}


SVCCA = Metric("svcca", dense=lambda x, y, cfg: svcca(x, y, cfg.variance, cfg.ridge), streamed=_cca(pw=False), symmetric=True)
PWCCA = Metric("pwcca", dense=lambda x, y, cfg: pwcca(x, y, cfg.ridge), streamed=_cca(pw=True), symmetric=False)
PROCRUSTES = Metric("procrustes", dense=lambda x, y, cfg: procrustes(x, y), streamed=_procrustes, symmetric=True, distance=True)
