"""Machine-readable benchmark figures: each benchmark's ``--json FILE`` appends one line here.

One JSON object per line: ``{"benchmark": name, "device": …, "rows": [{"what", "value", "unit",
"note"}]}``, so several benchmarks of one run (``gpu_check.sh``) fill one file and
``gpu_table.py`` prints them as one table. ``value`` is None where a figure could not be measured
(the note says why).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Row:
    """One figure: what was measured, its value (None: not measured) and unit, and a short note."""

    what: str
    value: float | None
    unit: str
    note: str = ""


def append(path: str | Path | None, benchmark: str, rows: list[Row], **meta: Any) -> None:
    """Append one line for ``benchmark`` to ``path`` (nothing when ``path`` is None)."""
    if path is None:
        return
    line = {"benchmark": benchmark, **meta, "rows": [asdict(r) for r in rows]}
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(line) + "\n")


def read(path: str | Path) -> list[dict[str, Any]]:
    """Every line of a results file, in order (a line that does not parse is reported as such)."""
    out = []
    for i, text in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not text.strip():
            continue
        try:
            out.append(json.loads(text))
        except json.JSONDecodeError as e:
            out.append({"benchmark": f"(line {i} unreadable: {e.msg})", "rows": []})
    return out
