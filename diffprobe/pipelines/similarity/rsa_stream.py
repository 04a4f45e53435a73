"""RSA over row sources: RDMs streamed by (tile, N) blocks, Spearman computed exactly from ranks.

Each source is read once, in chunks, into (N, D) float64 features on the device; its RDM's upper
triangle (M = N(N-1)/2 values) is computed tile by tile (never the N×N matrix) into a host buffer and
replaced by its doubled average ranks (:func:`~diffprobe.pipelines.similarity.math.doubled_ranks`);
every pair is then a Pearson correlation of two rank vectors.

Memory — exact Spearman needs the ranks of all M values, Θ(N²), which no tiling can bound:
:func:`rsa_bytes` = 4·M per array kept (its ranks) + the larger of 8·N·D + 8·M + tile (features and
the triangle while it fills) and 20·M (values, sort permutation, ranks while ranking); for 2 arrays
that is 1.2 GB at N = 10,000 and 30 GB at N = 50,000. Beyond max_memory the pass refuses before
reading, and ``rsa_sample`` estimates RSA on a seeded random subset of the items instead.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch

from diffprobe.errors import ConfigError
from diffprobe.pipelines.cka.source import Source
from diffprobe.pipelines.similarity.config import SimilarityConfig
from diffprobe.pipelines.similarity.math.rsa import doubled_ranks, pair_count, rsa, spearman_from_ranks, upper_triangle
from diffprobe.pipelines.similarity.metrics import Facts, Metric, Pair
from diffprobe.pipelines.similarity.read import read_features, read_rows, tile_rows_for
from diffprobe.sizes import format_bytes

log = logging.getLogger(__name__)

#: bytes per entry of a (tile, N) dissimilarity tile: the Gram turned dissimilarities in place, the triangle mask, its copy
TILE_BYTES_PER_ENTRY = 24


def rank_itemsize(m: int) -> int:
    """Bytes per doubled rank of M values (uint32 while 2M + 2 < 2³², else int64)."""
    return 4 if 2 * m + 2 < 2**32 else 8


def rsa_bytes(n: int, dim: int, arrays: int) -> int:
    """Peak bytes of exact streamed RSA over ``arrays`` sources of N items and (at most) ``dim`` features."""
    m = pair_count(n)
    r = rank_itemsize(m)
    return r * m * (arrays - 1) + max(8 * n * dim + 8 * m, (16 + r) * m)


def _rsa(sources: Sequence[Source], pairs: Sequence[Pair], cfg: SimilarityConfig, device: torch.device) -> tuple[dict[Pair, float], Facts]:
    keys = sorted({k for p in pairs for k in p})
    n_all = sources[0].n
    sampled = cfg.rsa_sample is not None and n_all > cfg.rsa_sample
    if sampled:
        assert cfg.rsa_sample is not None
        pick = np.sort(np.random.default_rng(cfg.seed).choice(n_all, cfg.rsa_sample, replace=False))
        sources = [s.subset(pick) for s in sources]
        log.info("RSA on a random subset of %d of %d items (seed %d): an estimate", cfg.rsa_sample, n_all, cfg.seed)
    n = sources[0].n
    need = rsa_bytes(n, max(sources[k].dim for k in keys), len(keys))
    if need > cfg.max_memory:
        raise ConfigError(
            f"exact RSA over {n} items needs ~{format_bytes(need)}: the ranks of all N(N-1)/2 = {pair_count(n)} dissimilarities "
            f"(20 bytes each while one array is ranked, {rank_itemsize(pair_count(n))} kept per array, {len(keys)} arrays), more "
            f"than max_memory {format_bytes(cfg.max_memory)}; raise max_memory, or set rsa_sample (e.g. 10000) to estimate "
            "RSA on a random subset of the items"
        )
    ranks: dict[int, np.ndarray] = {}
    tile = 0
    for k in keys:
        src = sources[k]
        x = read_features(src, read_rows([src], cfg), device)
        held = 8 * n * src.dim + (8 + rank_itemsize(pair_count(n)) * len(ranks)) * pair_count(n)  # rows, triangle, ranks so far
        tile = tile_rows_for(n, held, TILE_BYTES_PER_ENTRY, cfg, "RSA")
        tri = upper_triangle(x, cfg.rdm, tile, src.label, overwrite=True)
        del x
        ranks[k] = doubled_ranks(tri)
        del tri
    values = {(a, b): spearman_from_ranks(ranks[a], ranks[b], names=(sources[a].label, sources[b].label)) for a, b in pairs}
    facts = {"rdm": cfg.rdm, "items_used": n, "sampled": sampled, "tile_rows": tile, "estimated_peak_bytes": need}
    return values, facts


RSA = Metric("rsa", dense=lambda x, y, cfg: rsa(x, y, cfg.rdm), streamed=_rsa, symmetric=True)
