"""What ``DATA`` is: tar shards, a table on disk, or neither (a folder or a manifest)."""

from __future__ import annotations

import glob
import re
from pathlib import Path

from diffprobe.errors import DataError
from diffprobe.extract.data import DataSpec
from diffprobe.extract.sources.options import DataOptions
from diffprobe.extract.sources.read import is_url

_BRACE = re.compile(r"\{([^{}]*)\}")
_HUB = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def expand_braces(pattern: str) -> list[str]:
    """``a-{000..002}.tar`` → a-000.tar, a-001.tar, a-002.tar (zero padding kept); ``{x,y}`` → x, y;
    several braces multiply."""
    m = _BRACE.search(pattern)
    if m is None:
        return [pattern]
    body, head, tail = m.group(1), pattern[: m.start()], pattern[m.end() :]
    rng = re.fullmatch(r"(\d+)\.\.(\d+)", body)
    if rng:
        lo, hi = rng.group(1), rng.group(2)
        if int(hi) < int(lo):
            raise DataError(f"empty range {{{body}}} in {pattern!r}")
        width = len(lo) if lo.startswith("0") or len(lo) == len(hi) else 0
        choices = [str(i).zfill(width) for i in range(int(lo), int(hi) + 1)]
    else:
        choices = body.split(",")
    return [p for c in choices for p in expand_braces(head + c + tail)]


def expand(data: str) -> list[str]:
    """Every file ``data`` names: ``::``-joined parts, each a brace pattern, a glob or one path/URL."""
    out: list[str] = []
    for part in data.split("::"):
        for p in expand_braces(part.strip()):
            if not is_url(p) and any(c in p for c in "*?["):
                hits = sorted(glob.glob(str(Path(p).expanduser())))
                if not hits:
                    raise DataError(f"no files match {p!r}")
                out += hits
            else:
                out.append(p if is_url(p) else str(Path(p).expanduser()))
    return out


def _is_table_dir(p: Path) -> bool:
    return any((p / n).is_file() for n in ("dataset_dict.json", "state.json", "dataset_info.json"))


def open_source(data: str, options: DataOptions, index: Path | None, write_index: bool = True) -> DataSpec | None:
    """The items of ``data`` if it is tar shards or a table; None for a folder or a manifest.

    Raises:
        DataError: missing files, a hub name given for data, or unreadable shards (the message says which).
    """
    if any(m in data for m in ("::", "{")) or is_url(data) or any(c in data for c in "*?["):
        files = expand(data)
    else:
        p = Path(data).expanduser()
        if not p.exists():
            if _HUB.match(data):
                local = data.split("/")[-1]
                raise DataError(f"data not found: {data!r} is no local path. If it names a Hugging Face hub dataset: diffprobe "
                                f"never downloads; download it first (`hf download {data} --repo-type dataset --local-dir {local}`) "
                                f"and pass {local}")  # fmt: skip
            return None
        if p.is_dir():
            if _is_table_dir(p):
                from diffprobe.extract.sources.tables import saved_dataset

                return saved_dataset(p, options)
            tars = sorted(str(f) for f in p.glob("*.tar"))
            parquet = sorted(str(f) for f in p.glob("*.parquet"))
            if not (tars or parquet) or any(d.is_dir() and not d.name.startswith(".") for d in p.iterdir()):
                return None  # an ImageFolder tree
            files = tars or parquet
        else:
            files = [str(p)]
    kinds = {Path(f.split("?")[0]).suffix.lower() for f in files}
    if kinds == {".tar"}:
        from diffprobe.extract.sources.tars import tar_shards

        return tar_shards(files, options, index, write_index)
    if kinds == {".parquet"}:
        from diffprobe.extract.sources.tables import parquet_files

        return parquet_files(files, options)
    if len(files) == 1 and not is_url(files[0]):
        return None  # a manifest (or an error the manifest reader explains)
    raise DataError(f"expected .tar shards or .parquet files, got {', '.join(sorted(kinds))} in {data!r}")
