"""Synthetic class-mean stores written by extraction's own writer, for probes at scales no bundled
data reaches.

x = μ_y + ε, ε ~ N(0, 1) per feature, labels balanced and shuffled; the means are drawn
N(0, SEPARATION² / D) per feature, so two classes lie ~SEPARATION·√2 noise σ apart whatever the
dimension D. Units are drawn on a device and go through create_store, create_split,
create_feature_array and BackgroundWriter (data, then the done marker), so ``run_probe`` reads a
complete store as it reads an extracted one.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from budget import Report

#: Class-mean scale: ‖μ_a − μ_b‖ ≈ SEPARATION·√2 noise σ, whatever the dimension.
SEPARATION = 6.0


@dataclass(frozen=True)
class Written:
    """What :func:`write_synthetic` wrote: items per split (of how many), feature bytes, seconds."""

    items: dict[str, int]
    total: dict[str, int]
    nbytes: int
    seconds: float
    generate_seconds: float

    @property
    def complete(self) -> bool:
        return self.items == self.total

    def report(self, report: Report, stage: str, device: Any) -> None:
        """Two rows: ``{stage}: write`` (seconds) and ``{stage}: write throughput`` (MB/s)."""
        items = " + ".join(
            f"{self.items[s]:,} {s}" + (f" of {self.total[s]:,}" if self.items[s] < self.total[s] else "") for s in self.items
        )
        cut = "; stopped early (write budget), the rest stays NaN and invalid" if not self.complete else ""
        report.add(f"{stage}: write", self.seconds, "s", f"{items} items, {self.nbytes / 1e9:.2f} GB float16, generated on {device} "
                   f"({self.generate_seconds:.1f} s of it){cut}")  # fmt: skip
        report.add(f"{stage}: write throughput", self.nbytes / 1e6 / max(self.seconds, 1e-9), "MB/s", "feature bytes / write time")


def class_means(k: int, shape: tuple[int, ...], device: Any, seed: int = 1) -> Any:
    """(K, *shape) means ~ N(0, SEPARATION² / D) per feature, D = prod(shape): classes ~SEPARATION·√2 apart."""
    import torch

    gen = torch.Generator(device=device).manual_seed(seed)
    return torch.randn((k, *shape), generator=gen, device=device) * (SEPARATION / float(np.prod(shape)) ** 0.5)


def write_synthetic(path: Path, key: Any, shape: tuple[int, int, int], counts: dict[str, int], means: Any, device: Any,
                    stop_at: float, seed: int = 0) -> Written:  # fmt: skip
    """A store at ``path`` with one array ``key`` (N, *shape) float16 per split of ``counts``:
    x = means[y] + ε, ε ~ N(0, 1), labels balanced and shuffled; ``means`` (K, …) broadcasts to
    ``shape``. Units are drawn on ``device`` and written by extraction's BackgroundWriter (data, then
    the done marker). Past ``stop_at`` (perf_counter) no new unit starts: the rest stays NaN, valid False."""
    import torch

    from diffprobe.store.arrays import ArrayLayout
    from diffprobe.store.layout import auto_unit_size
    from diffprobe.store.progress import BackgroundWriter, UnitBuffer, UnitTask
    from diffprobe.store.store import create_store

    t0 = time.perf_counter()
    k = int(means.shape[0])
    synthetic = {"classes": k, "shape": list(shape), "separation": SEPARATION, "seed": seed}
    store = create_store(path, {"class_names": [f"class{c:04d}" for c in range(k)], "config": {"synthetic": synthetic},
                                "identity": {"synthetic": synthetic}, "config_hash": "synthetic"})  # fmt: skip
    rng = np.random.default_rng(seed)
    labels = {}
    for split, n in counts.items():
        labels[split] = rng.permutation(np.arange(n) % k)
        ids = [f"{split}/{i:08d}" for i in range(n)]
        store.create_split(split, ids, ids, labels[split].tolist(), auto_unit_size(int(np.prod(shape)) * 2, n))
        store.create_feature_array(split, key, ArrayLayout.of_map(*shape), "float16", module="synthetic")
    store.commit()
    gen = torch.Generator(device=device).manual_seed(seed)
    written = dict.fromkeys(counts, 0)
    generating = 0.0
    writer = BackgroundWriter(store)
    try:
        for split in counts:
            for unit, (a, b) in enumerate(store.units(split)):
                if time.perf_counter() > stop_at:
                    break
                g0 = time.perf_counter()
                y = torch.from_numpy(labels[split][a:b]).to(device)
                x = (means[y] + torch.randn((b - a, *shape), generator=gen, device=device)).half().cpu().numpy()
                generating += time.perf_counter() - g0
                buf = UnitBuffer(UnitTask(split, unit, a, b, (key,)), {key: shape}, "float16")
                buf.add(a, {key: x}, np.ones(b - a, dtype=bool), [])
                writer.submit(buf)
                written[split] += b - a
    finally:
        writer.close()
        store.commit()
        store.close()
    nbytes = sum(written.values()) * int(np.prod(shape)) * 2
    return Written(written, dict(counts), nbytes, time.perf_counter() - t0, generating)


def disk_ok(report: Report, what: str, folder: Path, nbytes: int) -> bool:
    """Whether ``folder`` has room for ``nbytes`` (and 10%); if not, a "not supported here" row says so."""
    folder.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(folder).free
    if free < 1.1 * nbytes:
        report.add(what, None, "s", f"not supported here: needs {nbytes / 1e9:.1f} GB on disk, {free / 1e9:.1f} GB free in {folder}")
        return False
    return True
