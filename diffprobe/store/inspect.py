"""Inspecting a store: what it holds (``store info``) and whether it is whole (``store verify``)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from diffprobe.sizes import format_bytes
from diffprobe.store.integrity import checksum_summary
from diffprobe.store.layout import FeatureKey
from diffprobe.store.metadata import metadata_findings
from diffprobe.store.store import FeatureStore

log = logging.getLogger(__name__)


def store_info(store: FeatureStore) -> dict[str, Any]:
    """Splits, arrays (shape, dtype, units done), items, failures and size on disk; damaged metadata
    (see :mod:`~diffprobe.store.metadata`) is listed under ``metadata`` and its splits and arrays left out."""
    findings = metadata_findings(store)
    bad_splits = {f.split for f in findings if f.whole_split}
    bad_arrays = {(f.split, f.array) for f in findings}
    info: dict[str, Any] = {
        "path": str(store.path),
        "format": store.format,
        "config_hash": store.config_hash,
        "model": store.config.get("model"),
        "checkpoint_sha256": store.attrs.get("checkpoint_sha256"),
        "random_weights": "identity" in store.attrs and store.attrs["identity"].get("checkpoint_sha256") is None,
        "family": store.attrs.get("identity", {}).get("family", "adm"),
        "noiseless": store.attrs.get("identity", {}).get("noise") == "none",
        "created": store.attrs.get("created"),
        "package_version": store.attrs.get("package_version"),
        "classes": len(store.class_names),
        "views": store.views,
        "augment": store.attrs.get("identity", {}).get("augment") if store.views > 1 else None,
        "bytes_on_disk": store.backend.nbytes_on_disk(),
        "complete": not findings and store.is_complete(),
        **checksum_summary(store, bad_arrays | {(s, None) for s in bad_splits}),
        "metadata": [f.line() for f in findings],
        "splits": {},
    }
    for split in store.splits:
        if split in bad_splits:
            continue
        comp = store.completeness(split)
        arrays = {}
        for name in store.keys(split):
            if (split, name) in bad_arrays:
                continue
            shape, dtype, _ = store.array_info(split, name)
            arrays[name] = {"shape": list(shape), "dtype": str(dtype), "units_done": comp[name][0], "units": comp[name][1]}
        info["splits"][split] = {
            "items": store.n_items(split),
            "unit_size": store.unit_size(split),
            "failed": int((~store.valid(split)).sum()) if _all_done(comp) else None,
            "computed_on": computed_on(store, split),
            "arrays": arrays,
        }
    return info


def _all_done(comp: dict[str, tuple[int, int]]) -> bool:
    return all(d == n for d, n in comp.values())


@dataclass
class VerifyReport:
    """What :func:`verify_store` found from the metadata; ``ok`` is False when a unit is not done."""

    missing_units: dict[str, dict[str, list[int]]] = field(default_factory=dict)  # split → key → units
    failed_items: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    #: things worth knowing that do not make the store incomplete (mixed devices, eager fallback)
    notes: list[str] = field(default_factory=list)
    #: what makes the store unusable although its units may be done: damaged metadata, splits whose every item failed
    findings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(self.missing_units.values()) and not self.findings

    @property
    def n_failed(self) -> int:
        """Items recorded as failed (images that could not be decoded), over all splits."""
        return sum(len(f) for f in self.failed_items.values())


Markers = dict[int, dict[str, Any]]


def missing_units(store: FeatureStore, split: str, marks: Markers | None = None) -> dict[str, list[int]]:
    """{feature array: units without a done marker for it} (only arrays with some missing);
    ``marks``: the split's markers, if already read."""
    marks = store.markers(split) if marks is None else marks
    n = len(store.units(split))
    out = {}
    for name in store.keys(split):
        if FeatureKey.is_key(name):
            todo = [u for u in range(n) if name not in marks.get(u, {}).get("keys", ())]
            if todo:
                out[name] = todo
    return out


def failed_items(store: FeatureStore, split: str, marks: Markers | None = None) -> list[tuple[str, str]]:
    """(item id, reason) of every image recorded as failed in the split's markers."""
    marks = store.markers(split) if marks is None else marks
    return [(str(f[0]), str(f[1])) for m in marks.values() for f in m.get("failed", [])]


def verify_store(store: FeatureStore) -> VerifyReport:
    """Check the metadata only: done markers, failed items, compute notes. Reads no chunk, so it
    takes the same time for any store size; :func:`~diffprobe.store.integrity.deep_verify` reads
    the values."""
    rep = VerifyReport()
    found = metadata_findings(store)
    rep.findings += [f.line() for f in found]
    for split in store.splits:
        if any(f.split == split and f.whole_split for f in found):
            continue  # without a trusted item count its units cannot be judged
        marks = store.markers(split)
        rep.failed_items[split] = failed_items(store, split, marks)
        rep.missing_units[split] = missing_units(store, split, marks)
        rep.notes += compute_notes(store, split, marks)
        n = store.n_items(split)
        if n and not rep.missing_units[split] and len(rep.failed_items[split]) >= n:
            rep.findings.append(f"every one of the {n} items of split {split!r} failed to decode: it holds no features. Fix the "
                                "images, then extract again with --overwrite")  # fmt: skip
    return rep


def computed_on(store: FeatureStore, split: str) -> dict[str, int]:
    """{device: finished units computed there} from the done markers (units from before this was
    recorded count as "unrecorded")."""
    return _devices(store.markers(split).values())


def _devices(marks: Iterable[dict[str, Any]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for m in marks:
        dev = m.get("compute", {}).get("device", "unrecorded")
        out[dev] = out.get(dev, 0) + 1
    return out


def compute_notes(store: FeatureStore, split: str, markers: Markers | None = None) -> list[str]:
    """Units whose values may differ in rounding from the rest: another device type, or an eager
    forward in a store made with --compile (where torch.compile was unavailable)."""
    notes = []
    marks = list((store.markers(split) if markers is None else markers).values())
    eager = sum(1 for m in marks if m.get("compute", {}).get("compiled") is False)
    if eager and store.attrs.get("identity", {}).get("compile"):
        notes.append(
            f"{split}: {eager} of {len(marks)} units ran eagerly although the store was made with --compile "
            "(torch.compile was unavailable there); their values differ from compiled ones in rounding"
        )
    devices = _devices(marks)
    kinds = {d.split(" ")[0].split(":")[0] for d in devices if d != "unrecorded"}
    if len(kinds) > 1:
        listed = ", ".join(f"{d} ({n})" for d, n in sorted(devices.items()))
        notes.append(f"{split}: units were computed on several kinds of device: {listed}; values differ between them in rounding")
    return notes


def info_lines(info: dict[str, Any]) -> list[str]:
    """:func:`store_info` as the lines ``store info`` prints."""
    out = [
        f"{info['path']} ({info['format']}, {format_bytes(info['bytes_on_disk'])} on disk)",
        f"  model {info['model']}, config {info['config_hash']}, {info['classes']} classes, "
        f"created {info['created']} by diffprobe {info['package_version']}",
        "  weights: RANDOM (no checkpoint: features of an untrained network)" if info["random_weights"]
        else f"  weights: checkpoint sha256 {str(info['checkpoint_sha256'])[:16]}…",
        f"  chunk checksums: {info['checksums']}" + (f" ({info['arrays_without']} array(s) without)" if info["arrays_without"] and info["checksums"] else "")
        if info["checksums"] else "  chunk checksums: NONE (a store written before diffprobe added them: corruption of a chunk goes unnoticed)",
        f"  {'complete' if info['complete'] else 'INCOMPLETE'}",
        *(f"  {line}" for line in info.get("metadata", [])),
    ]
    if info.get("views", 1) > 1:
        v = info["views"]
        out.insert(3, f"  views: {v} per item (view 0 the evaluation centre crop; {'view 1' if v == 2 else f'views 1..{v - 1}'} augment {info['augment']}); "
                      "`diffprobe store show STORE ITEM --views` draws them")  # fmt: skip
    if info.get("noiseless"):
        out.insert(3, f"  timesteps: none (a {info['family']} image model: features of the clean image, stored as t = 0)")
    for split, sp in info["splits"].items():
        failed = "?" if sp["failed"] is None else sp["failed"]
        on = ", ".join(f"{d} ({n})" for d, n in sp["computed_on"].items())
        out.append(f"  split {split}: {sp['items']} items, unit size {sp['unit_size']}, failed {failed}; units computed on {on or '-'}")
        for name, a in sp["arrays"].items():
            shape = "×".join(str(d) for d in a["shape"])
            out.append(f"    {name:<18} {shape:<22} {a['dtype']:<8} units {a['units_done']}/{a['units']}")
    return out


def missing_lines(missing_units: dict[str, dict[str, list[int]]], prefix: str) -> list[str]:
    """One line per (split, array) with units not done, the first 20 units listed."""
    out = []
    for split, missing in missing_units.items():
        for name, units in missing.items():
            shown = ", ".join(map(str, units[:20])) + (" …" if len(units) > 20 else "")
            out.append(f"{prefix}: {split}/{name}: {len(units)} unit(s) not done ({shown})")
    return out


def verify_lines(rep: VerifyReport) -> list[str]:
    """A :class:`VerifyReport` as the lines ``store verify`` prints (the verdict last)."""
    out = missing_lines(rep.missing_units, "incomplete")
    out += [f"note: {line}" for line in rep.notes]
    out += [f"failed item: {split}/{item}: {err}" for split, fails in rep.failed_items.items() for item, err in fails]
    out += rep.findings
    if rep.findings:
        return [*out, f"store is DAMAGED or unusable: {len(rep.findings)} finding(s) above; `diffprobe store repair` rebuilds "
                      "damaged metadata from the store's own records (and says what it cannot)"]  # fmt: skip
    if not rep.ok:
        return [*out, "store is NOT complete; re-run the extraction to finish it"]
    return [*out, f"ok: every unit is done ({rep.n_failed} failed item(s) recorded; metadata only: --deep reads every chunk)"]
