"""One table from a GPU check's figures: every benchmark's rows, then the targets met or missed.

Reads the JSON lines the benchmarks' ``--json FILE`` appended (see results.py) and, with --tests,
the GPU tests' pytest log. The targets are issue 19's:

    end to end p=2 ≥ 750 img/s and ≥ 8.7× the reference style of the same run;
    end to end native maps ≥ 90% of the p=2 rate; the store writer alone ≥ 400 MB/s;
    logistic and 4-lr linear fits on 1.28M × 4,096 features < 5 min each; every GPU test passes.

    python benchmarks/gpu_table.py $OUT/results.jsonl --tests $OUT/gpu_tests.log
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

from results import read


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    if unit in ("share",):
        return f"{value:.1%}"
    return f"{value:,.3g}" if abs(value) < 100 else f"{value:,.0f}"


def find(lines: list[dict[str, Any]], benchmark: str, pattern: str) -> dict[str, Any] | None:
    """The last row of ``benchmark`` whose ``what`` matches ``pattern`` (a regex)."""
    hit = None
    for line in lines:
        if line.get("benchmark") == benchmark:
            for row in line["rows"]:
                if re.search(pattern, row["what"]):
                    hit = row
    return hit


def value(row: dict[str, Any] | None) -> float | None:
    return None if row is None else row.get("value")


def targets(lines: list[dict[str, Any]], tests: tuple[int, int] | None) -> list[tuple[str, str, bool | None]]:
    """(target, measured, met) for each of the issue's targets; met is None where not measured."""
    out: list[tuple[str, str, bool | None]] = []
    ref = value(find(lines, "extract_speed", r": reference"))
    p2 = value(find(lines, "extract_speed", r"end to end, p=2"))
    native = value(find(lines, "extract_speed", r"end to end, .*native map"))
    out.append(("end to end p=2 ≥ 750 img/s", fmt(p2, "img/s") + " img/s", None if p2 is None else p2 >= 750))
    ratio = None if p2 is None or not ref else p2 / ref
    out.append(("end to end p=2 ≥ 8.7× the reference style", "—" if ratio is None else f"{ratio:.2f}×", None if ratio is None else ratio >= 8.7))
    share = None if p2 is None or native is None or not p2 else native / p2
    out.append(("native maps ≥ 90% of the p=2 rate", "—" if share is None else f"{share:.1%}", None if share is None else share >= 0.9))
    writer = [r["value"] for ln in lines if ln.get("benchmark") == "writer_speed" for r in ln["rows"]
              if "BackgroundWriter" in r["what"] and r["value"] is not None]  # fmt: skip
    best = max(writer) if writer else None
    out.append(("store writer alone ≥ 400 MB/s", "—" if best is None else f"{best:,.0f} MB/s", None if best is None else best >= 400))
    for probe in ("logistic", "linear"):
        fit = value(find(lines, "gpu_probes", rf"scale: {probe}.* fit"))
        out.append((f"{probe} fit on the scale features < 5 min", "—" if fit is None else f"{fit:,.0f} s", None if fit is None else fit < 300))
    if tests is not None:
        passed, failed = tests
        out.append(("every GPU test passes", f"{passed} passed, {failed} failed", failed == 0 and passed > 0))
    return out


def pytest_counts(log: Path) -> tuple[int, int] | None:
    """(passed, failed + errors) from a pytest log's summary line; None without one."""
    text = log.read_text(encoding="utf-8", errors="replace") if log.exists() else ""
    summary = [ln for ln in text.splitlines() if re.search(r"\d+ (passed|failed|error)", ln)]
    if not summary:
        return None
    counts = dict((w, int(n)) for n, w in re.findall(r"(\d+) (passed|failed|errors?)", summary[-1]))
    return counts.get("passed", 0), counts.get("failed", 0) + counts.get("error", 0) + counts.get("errors", 0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", help="the JSON-lines file the benchmarks appended to")
    ap.add_argument("--tests", default=None, help="the GPU tests' pytest log")
    args = ap.parse_args()
    lines = read(args.results) if Path(args.results).exists() else []
    devices = sorted({str(ln["device"]) for ln in lines if ln.get("device")})
    print(f"device: {', '.join(devices) or 'unknown'}")
    print(f"{'benchmark':<14} {'what':<64} {'value':>10} {'unit':<6} note")
    for line in lines:
        for r in line["rows"]:
            print(f"{line['benchmark']:<14} {r['what'][:64]:<64} {fmt(r['value'], r['unit']):>10} {r['unit']:<6} {r.get('note', '')}")
    tests = pytest_counts(Path(args.tests)) if args.tests else None
    print("\ntargets:")
    for what, measured, met in targets(lines, tests):
        mark = "not measured" if met is None else ("met" if met else "MISSED")
        print(f"  {what:<48} {measured:>18}  {mark}")


if __name__ == "__main__":
    main()
