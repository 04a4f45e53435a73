"""Reading row sources for the similarity passes: whole (N, D) float64 features on a device, read in
chunks, and the row counts of chunks and tiles that fit max_memory."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from diffprobe.errors import ConfigError
from diffprobe.pipelines.cka.source import NonFiniteRows, Source, chunk_bounds, chunk_rows_for, iter_chunks
from diffprobe.pipelines.similarity.config import SimilarityConfig
from diffprobe.sizes import format_bytes


def read_rows(sources: Sequence[Source], cfg: SimilarityConfig, budget: int | None = None) -> int:
    """Rows per streamed read: ``cfg.chunk_rows``, else what fits ``budget`` (default: a quarter of max_memory)."""
    return cfg.chunk_rows or chunk_rows_for(sources, cfg.max_memory // 4 if budget is None else max(0, budget))


def as_device_rows(raw: object, device: torch.device, label: str) -> Tensor:
    """One chunk (R, D) from :func:`iter_chunks` as a new float64 tensor on ``device`` (never a view of the
    caller's array: the passes shift chunks in place); NaN/inf raise NonFiniteRows."""
    t = torch.from_numpy(raw).to(device=device, dtype=torch.float64, copy=True)  # type: ignore[arg-type]
    if not bool(torch.isfinite(t).all()):
        raise NonFiniteRows(label)
    return t


def read_features(source: Source, chunk_rows: int, device: torch.device) -> Tensor:
    """All rows of ``source`` as an (N, D) float64 tensor on ``device``, read ``chunk_rows`` at a time."""
    out = torch.empty(source.n, source.dim, dtype=torch.float64, device=device)
    for start, stop, (raw,) in iter_chunks([source], chunk_bounds(source.n, chunk_rows)):
        out[start:stop] = as_device_rows(raw, device, source.label)
    return out


def tile_rows_for(n: int, held: int, bytes_per_entry: int, cfg: SimilarityConfig, what: str) -> int:
    """Rows of an (rows, N) tile: ``cfg.tile_rows``, else what fits max_memory beside ``held`` bytes."""
    if held > cfg.max_memory:
        raise ConfigError(
            f"{what} over {n} items holds {format_bytes(held)} (the (N, D) float64 features), more than max_memory "
            f"{format_bytes(cfg.max_memory)}; raise max_memory or use fewer features (a smaller pool)"
        )
    if cfg.tile_rows:
        return min(cfg.tile_rows, n)
    return max(1, min(n, (cfg.max_memory - held) // (bytes_per_entry * max(1, n))))
