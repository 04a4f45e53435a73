"""A probe run's configuration and its result — one type for every probe, classification and dense.

:class:`ProbeConfig` says which probe, on which arrays, with which hyper-parameters and data plan;
:class:`ProbeResult` holds what came out. Its JSON (:meth:`ProbeResult.to_dict`) and its tidy CSV row
(:meth:`ProbeResult.csv_row`) have one schema, documented in ``docs/probes.md``: numbers are
numbers; a key's ``pool`` is a size or ``"full"``; ``score`` is the task's headline metric (top-1
for classification, mIoU for dense probes, both fractions in [0, 1]) and ``metric`` names it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from diffprobe.outputs import claim_output
from diffprobe.probes.errors import ProbeError
from diffprobe.probes.plan import DataConfig
from diffprobe.probes.registry import check_probe_name
from diffprobe.store.layout import FULL
from diffprobe.store.select import KeyInfo

#: each task's headline metric (the ``score`` of a result)
TASK_METRIC = {"classification": "top1", "dense": "miou"}
#: Columns of the tidy CSV row, in order (both tasks: a metric that does not apply is empty).
CSV_COLUMNS = (
    "probe", "task", "train_split", "eval_split", "key", "t", "block", "pool", "params", "selected", "metric", "score",
    "top1", "top5", "mean_per_class", "miou", "pixel_accuracy", "n_train", "n_eval", "fit_seconds", "complete", "config_hash",
)  # fmt: skip


@dataclass(frozen=True)
class ProbeConfig:
    """A probe run: which probe with which hyper-parameters, on which keys, with which data plan."""

    probe: str
    keys: tuple[str, ...]
    params: Mapping[str, Any] = field(default_factory=dict)
    data: DataConfig = field(default_factory=DataConfig)

    def __post_init__(self) -> None:
        check_probe_name(self.probe)
        keys = (self.keys,) if isinstance(self.keys, str) else tuple(self.keys)
        if not keys:
            raise ProbeError("expected at least one key in ProbeConfig.keys")
        object.__setattr__(self, "keys", keys)
        given = self.params.get("standardize", self.data.standardize)
        if bool(given) != self.data.standardize:
            raise ProbeError(
                f"expected standardisation to be set once, by DataConfig.standardize ({self.data.standardize}); "
                f"got params standardize={given!r}: use --standardize/--no-standardize instead of -p standardize"
            )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["params"] = dict(self.params)
        return d


def pool_value(pool: int | None) -> int | str:
    """A pool as results write it: the size, or ``"full"`` for the native map."""
    return FULL if pool is None else int(pool)


@dataclass
class ProbeResult:
    """Metrics and provenance of one run (``trained`` is the fitted probe; absent after k-fold).

    Attributes:
        task: ``classification`` or ``dense``; ``metrics`` holds the task's metrics (top1, top5,
            mean_per_class, per_class; or miou, pixel_accuracy, iou) as fractions.
        fold_scores: the headline metric of each fold (one for a single split or hold-out).
        complete: whether every item of the splits read was extracted (see ``--allow-incomplete``).
        coverage: per split read, ``{"complete", "items", "items_read"}`` (see :mod:`diffprobe.store.coverage`).
        extra: task-specific records (a dense probe's losses and confusion matrix).
    """

    config: ProbeConfig
    keys: tuple[KeyInfo, ...]
    train_split: str
    eval_split: str
    metrics: dict[str, Any]
    fold_scores: list[float]
    n_train: int
    n_eval: int
    fit_seconds: float
    selected: dict[str, Any]
    store: dict[str, Any]
    trained: Any = None
    task: str = "classification"
    complete: bool = True
    extra: dict[str, Any] = field(default_factory=dict)
    coverage: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def metric(self) -> str:
        """The name of the headline metric: ``top1`` or ``miou``."""
        return TASK_METRIC[self.task]

    @property
    def score(self) -> float:
        """The headline metric (a fraction in [0, 1])."""
        return float(self.metrics[self.metric])

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (the schema of ``docs/probes.md``)."""
        return {
            "probe": self.config.probe,
            "task": self.task,
            "metric": self.metric,
            "score": self.score,
            "keys": [key_dict(k) for k in self.keys],
            "train_split": self.train_split,
            "eval_split": self.eval_split,
            "metrics": self.metrics,
            "fold_scores": self.fold_scores,
            "n_train": self.n_train,
            "n_eval": self.n_eval,
            "fit_seconds": round(self.fit_seconds, 4),
            "complete": self.complete,
            "coverage": self.coverage,
            "selected": self.selected,
            "store": self.store,
            "config": self.config.to_dict(),
            **self.extra,
        }

    def csv_row(self) -> dict[str, Any]:
        """One tidy row (:data:`CSV_COLUMNS`): several keys are joined with '+' (t, block and pool too)."""

        def joined(attr: str) -> Any:
            vals = ["" if k.key is None else (pool_value(k.key.pool) if attr == "pool" else getattr(k.key, attr)) for k in self.keys]
            return vals[0] if len(vals) == 1 else "+".join(map(str, vals))

        m = self.metrics
        return {
            "probe": self.config.probe, "task": self.task, "train_split": self.train_split, "eval_split": self.eval_split,
            "key": "+".join(k.name for k in self.keys), "t": joined("t"), "block": joined("block"), "pool": joined("pool"),
            "params": json.dumps(dict(self.config.params), sort_keys=True, default=str),
            "selected": json.dumps(self.selected, sort_keys=True, default=str), "metric": self.metric, "score": self.score,
            **{c: m.get(c, "") for c in ("top1", "top5", "mean_per_class", "miou", "pixel_accuracy")},
            "n_train": self.n_train, "n_eval": self.n_eval, "fit_seconds": round(self.fit_seconds, 4), "complete": self.complete,
            "config_hash": self.store.get("config_hash"),
        }  # fmt: skip

    def save_json(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write :meth:`to_dict` as JSON; an existing ``path`` is refused (:class:`OutputExistsError`) unless ``overwrite``."""
        p = claim_output(path, overwrite=overwrite)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(self.to_dict(), indent=1, default=str) + "\n")
        return p


def key_dict(k: KeyInfo) -> dict[str, Any]:
    """A key in results: its name and (t, block, pool), pool a size or ``"full"`` (None for imported arrays)."""
    d = k.to_dict()
    if k.key is not None:
        d["pool"] = pool_value(k.key.pool)
    return d
