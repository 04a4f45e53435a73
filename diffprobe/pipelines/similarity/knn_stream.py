"""The k-NN metrics (mutual k-NN, CKNNA, cycle k-NN) over row sources, never holding an N×N matrix.

Each source is read once, in chunks, into an (N, D) float64 tensor on the device; its k-NN table
(:class:`~diffprobe.pipelines.similarity.math.NeighbourTable`: (N, k) neighbour indices, the kernel
at those neighbours, the kernel's row means) is then computed from (tile, N) score tiles, and every
pair of sources is finished from the two tables alone in O(N·k·log k). A matrix of L arrays thus
costs L neighbour passes, not one per pair.

Memory per source: 8·N·D bytes of features (prepared in place) plus ~24·tile·N bytes of tile (Gram,
euclidean score, top-k scratch); tile rows come from max_memory (or ``tile_rows``). The tables kept for the pairs take
24·N·k bytes per source. Tie rule and exactness: see :mod:`~diffprobe.pipelines.similarity.math.knn`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import torch
from tqdm.auto import tqdm

from diffprobe.pipelines.cka.source import Source
from diffprobe.pipelines.similarity.config import SimilarityConfig
from diffprobe.pipelines.similarity.math.cknna import cknna, cknna_tables
from diffprobe.pipelines.similarity.math.knn import (
    NeighbourTable,
    cycle_knn,
    cycle_knn_tables,
    mutual_knn,
    mutual_knn_tables,
    neighbour_table,
)
from diffprobe.pipelines.similarity.metrics import Facts, Metric, Pair, StreamFn
from diffprobe.pipelines.similarity.read import read_features, read_rows, tile_rows_for
from diffprobe.progress import bar_disabled

log = logging.getLogger(__name__)

#: bytes per entry of a (tile, N) score tile: the Gram, the euclidean score, top-k scratch
TILE_BYTES_PER_ENTRY = 24


def neighbour_tables(
    sources: Sequence[Source], keys: Sequence[int], cfg: SimilarityConfig, device: torch.device
) -> tuple[dict[int, NeighbourTable], Facts]:
    """The k-NN table of each source in ``keys`` (one read of each), and the facts of the run."""
    tables: dict[int, NeighbourTable] = {}
    tiles: list[int] = []
    with tqdm(total=len(keys), unit="array", desc="k-NN tables", disable=bar_disabled(), leave=False) as bar:
        for key in keys:
            src = sources[key]
            x = read_features(src, read_rows([src], cfg), device)
            tile = tile_rows_for(src.n, 8 * src.n * src.dim, TILE_BYTES_PER_ENTRY, cfg, "a k-NN metric")
            log.debug("k-NN table of %s: %d items, k = %d, %s neighbours, %d-row tiles", src.label, src.n, cfg.k, cfg.neighbours, tile)
            tables[key] = neighbour_table(x, cfg.k, cfg.neighbours, tile, src.label, overwrite=True)
            tiles.append(tile)
            del x
            bar.update(1)
    return tables, {"k": cfg.k, "neighbours": cfg.neighbours, "tile_rows": min(tiles, default=0), "passes": len(keys)}


def _streamed(finish: Callable[[NeighbourTable, NeighbourTable, tuple[str, str]], float]) -> StreamFn:
    def run(sources: Sequence[Source], pairs: Sequence[Pair], cfg: SimilarityConfig, device: torch.device) -> tuple[dict[Pair, float], Facts]:
        tables, facts = neighbour_tables(sources, sorted({k for p in pairs for k in p}), cfg, device)
        return {(a, b): finish(tables[a], tables[b], (sources[a].label, sources[b].label)) for a, b in pairs}, facts

    return run


MUTUAL_KNN = Metric(
    "mutual-knn",
    dense=lambda x, y, cfg: mutual_knn(x, y, cfg.k, cfg.neighbours),
    streamed=_streamed(lambda a, b, names: mutual_knn_tables(a, b)),
    symmetric=True,
)
CKNNA = Metric(
    "cknna",
    dense=lambda x, y, cfg: cknna(x, y, cfg.k, cfg.neighbours),
    streamed=_streamed(cknna_tables),
    symmetric=True,
)
CYCLE_KNN = Metric(
    "cycle-knn",
    dense=lambda x, y, cfg: cycle_knn(x, y, cfg.k, cfg.neighbours),
    streamed=_streamed(lambda a, b, names: cycle_knn_tables(a, b)),
    symmetric=False,
)
