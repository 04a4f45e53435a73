"""What an extraction run did (or, for a dry run, would do), and how it is printed."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from diffprobe.sizes import format_bytes


@dataclass
class ExtractSummary:
    """What a run did: items processed, failures, time, throughput, bytes written."""

    store: str
    config_hash: str
    units_total: int
    units_run: int
    units_skipped: int
    items: int
    forwards: int
    failures: list[tuple[str, str, str]] = field(default_factory=list)
    seconds: float = 0.0
    bytes_written: int = 0
    dry_run: bool = False
    plan: dict[str, Any] = field(default_factory=dict)
    #: items/s after the first result (no model loading, store creation or compilation)
    steady_items_per_second: float | None = None

    @property
    def items_per_second(self) -> float:
        return self.items / self.seconds if self.seconds > 0 else 0.0

    def lines(self) -> list[str]:
        if self.dry_run:
            p = self.plan
            out = [f"dry run: would write {p['store']} ({p['format']}, config {p['config_hash']})"]
            out += [f"  model {p['model']}, weights {p['weights']}, precision {p['precision']}"]
            out += [f"  splits {p['splits']}, {p['classes']} classes"]
            out += [f"  forward: {p['forward_batch']} images × {p['fuse_timesteps']} fused (t, draw) passes"]
            if p["views"] > 1:
                v = p["views"]
                out += [f"  views: {v} (view 0 the centre crop, 1..{v - 1} {p['augment']!r}): {v}× the model forwards and bytes of one view"]
            out += [f"  cost: {p['forwards_per_image']} model passes per image (views × timesteps × draws), "
                    f"{p['forwards_per_image'] * sum(p['splits'].values())} in all"]  # fmt: skip
            out += [f"  block {b}" for b in p["blocks"]]
            out += [f"  array {a}" for a in p["arrays"]]
            out += [f"  pending units: {self.units_run} of {self.units_total}; estimated size ≤ {format_bytes(p['estimated_bytes'])} (uncompressed)"]
            out += p.get("peak_memory", {}).get("lines", [])
            return out
        return [
            f"store {self.store} (config {self.config_hash})",
            f"  units: {self.units_run} run, {self.units_skipped} already done, {self.units_total} total",
            f"  items: {self.items} ({self.forwards} model forwards), failed: {len(self.failures)}",
            f"  time: {self.seconds:.1f} s, {self.items_per_second:.1f} items/s"
            + (f" ({self.steady_items_per_second:.1f}/s steady)" if self.steady_items_per_second else "")
            + f", written {format_bytes(self.bytes_written)}",
            *[f"  failed: [{s}] {i}: {e}" for s, i, e in self.failures[:20]],
        ]
