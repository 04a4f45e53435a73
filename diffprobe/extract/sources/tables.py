"""Hugging Face datasets on disk: ``save_to_disk`` folders (Arrow) and Parquet files, read with pyarrow.

Rows keep the files' order. The image column holds datasets' ``Image`` structs ({bytes, path}) or
raw bytes; the label column integers (a ``ClassLabel``'s names come from the files' metadata) or
strings; ids come from ``id_column`` or are the row index (``row-00000042``, counted over all files
of a split in order).
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from diffprobe.errors import DataError
from diffprobe.extract.sources.files import cached
from diffprobe.extract.sources.item import DataSpec, Item, name_labels
from diffprobe.extract.sources.kinds import SourceKind, Target
from diffprobe.extract.sources.options import DataOptions, split_of

if TYPE_CHECKING:
    import pyarrow as pa

INSTALL = "pip install 'diffprobe[datasets]'"


def import_pyarrow() -> ModuleType:
    try:
        import pyarrow
    except ImportError as e:
        raise DataError(f"Hugging Face datasets on disk need the optional dependency pyarrow ({e}); install it: {INSTALL}") from None
    return pyarrow


def _arrow_table(path: str) -> pa.Table:
    pa = import_pyarrow()
    try:
        return pa.ipc.open_stream(pa.memory_map(path)).read_all()
    except pa.ArrowInvalid:
        return pa.ipc.open_file(pa.memory_map(path)).read_all()


def _open_table(path: str, kind: str) -> tuple[pa.Schema, int, Any]:
    """(schema, rows, columns(names) → {name: values}) of one file, reading it once (Arrow: the
    memory-mapped table; Parquet: its footer, then only the columns asked for)."""
    if kind == "arrow":
        t = _arrow_table(path)
        return t.schema, int(t.num_rows), lambda names: {n: t.column(n).to_pylist() for n in names}
    import_pyarrow()
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    return pf.schema_arrow, int(pf.metadata.num_rows), lambda names: {n: c.to_pylist() for n, c in zip(names, pf.read(columns=list(names)).columns)}


def _class_names(schema: pa.Schema, column: str) -> list[str] | None:
    meta = (schema.metadata or {}).get(b"huggingface")
    if not meta:
        return None
    feat = json.loads(meta).get("info", {}).get("features", {}).get(column, {})
    return list(feat["names"]) if feat.get("_type") == "ClassLabel" and "names" in feat else None


def _table_items(files: list[tuple[str, str, str]], options: DataOptions, where: str) -> DataSpec:
    """files: (split, path, kind) in order."""
    want = [options.image_column, *(c for c in (options.label_column, options.id_column) if c)]
    names: list[str] | None = None
    rows: list[tuple[str, str, str, int, Any, Any]] = []
    for split, path, kind in files:
        schema, n, columns = _open_table(path, kind)
        missing = [c for c in want if c not in schema.names]
        if missing:
            raise DataError(f"{path} has no column(s) {missing}; it has {schema.names} (name them with --image-column, "
                            "--label-column, --id-column)")  # fmt: skip
        if options.label_column:
            names = names or _class_names(schema, options.label_column)
        cols = columns([c for c in want if c != options.image_column])
        for r in range(n):
            label = cols[options.label_column][r] if options.label_column else None
            rid = cols[options.id_column][r] if options.id_column else None
            rows.append((split, path, kind, r, label, rid))
    if names is None:
        names, _ = name_labels({r[4] for r in rows if r[4] is not None})
    spec = DataSpec(names, source={"kind": "table", "ids": f"column {options.id_column}" if options.id_column else "row index"})
    splits: dict[str, list[Item]] = {}  # each split's items, built here (spec.splits takes them at the end)
    counters: dict[str, int] = {}
    seen: dict[str, set[str]] = {}
    for split, path, kind, r, label, rid in rows:
        k = counters.get(split, 0)
        counters[split] = k + 1
        item_id = str(rid) if options.id_column else f"row-{k:08d}"
        if item_id in seen.setdefault(split, set()):
            raise DataError(f"{where}: id {item_id!r} repeats in split {split!r}; ids must be unique (use another --id-column)")
        seen[split].add(item_id)
        idx = -1 if label is None else (names.index(label) if isinstance(label, str) else int(label))
        splits.setdefault(split, []).append(Item(item_id, path, idx, kind, r, 0, options.image_column))
    spec.splits.update(splits)
    if not rows:
        raise DataError(f"{where} holds no rows")
    return spec


def saved_dataset(root: Path, options: DataOptions) -> DataSpec:
    """A folder written by ``Dataset.save_to_disk`` (one split, named by ``--split`` or ``train``) or
    ``DatasetDict.save_to_disk`` (its splits)."""
    import_pyarrow()
    if (root / "dataset_dict.json").is_file():
        splits = json.loads((root / "dataset_dict.json").read_text()).get("splits", [])
        parts = [(s, root / s) for s in splits]
    else:
        parts = [(options.split or "train", root)]
    files = []
    for split, d in parts:
        state = json.loads((d / "state.json").read_text()) if (d / "state.json").is_file() else {}
        names = [f["filename"] for f in state.get("_data_files", [])] or sorted(p.name for p in d.glob("*.arrow"))
        if not names:
            raise DataError(f"{d} has no Arrow data files (data-*.arrow); is it a folder written by save_to_disk?")
        files += [(split, str(d / n), "arrow") for n in names]
    return _table_items(files, options, str(root))


def parquet_files(paths: list[str], options: DataOptions) -> DataSpec:
    """Parquet files (split from ``--split`` or a split word in each file name)."""
    import_pyarrow()
    missing = [p for p in paths if not Path(p).is_file()]
    if missing:
        raise DataError(f"parquet file(s) not found: {', '.join(missing[:3])}")
    return _table_items([(split_of(Path(p).name, options), p, "parquet") for p in paths], options, paths[0])


def _row_group(path: str, row: int) -> tuple[Any, int]:
    """(the row group holding ``row`` as a table, the row's offset in it); the last group stays cached."""
    import pyarrow.parquet as pq

    pf = cached("parquet", path, lambda: pq.ParquetFile(path))
    start = 0
    for g in range(pf.metadata.num_row_groups):
        n = pf.metadata.row_group(g).num_rows
        if row < start + n:
            return cached("group", f"{path}#{g}", lambda: pf.read_row_group(g)), row - start
        start += n
    raise OSError(f"{path} has no row {row}")


def row_image(item: Item) -> bytes:
    """The encoded image of a table row."""
    if item.kind == "arrow":
        table, r = cached("arrow", item.path, lambda: _arrow_table(item.path)), item.offset
    else:
        table, r = _row_group(item.path, item.offset)
    value = table.column(item.member)[r].as_py()
    if isinstance(value, dict):
        if value.get("bytes"):
            return bytes(value["bytes"])
        if value.get("path"):
            return Path(value["path"]).read_bytes()
        raise OSError(f"{item.path}, row {item.offset}: the image is empty")
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    raise OSError(f"{item.path}, row {item.offset}: column {item.member!r} holds {type(value).__name__}, not an encoded image")


def _read_row(item: Item) -> io.BytesIO:
    return io.BytesIO(row_image(item))


def _detect_saved(target: Target, options: DataOptions) -> DataSpec | None:
    p = target.path
    if p is None or not p.is_dir() or not any((p / n).is_file() for n in ("dataset_dict.json", "state.json", "dataset_info.json")):
        return None
    return saved_dataset(p, options)


def _detect_parquet(target: Target, options: DataOptions) -> DataSpec | None:
    files = target.shards(".parquet")
    return None if files is None else parquet_files(files, options)


#: Hugging Face ``save_to_disk`` folders (Arrow files)
ARROW = SourceKind("arrow", detect=_detect_saved, read=_read_row)
#: Parquet files (one split each, from ``--split-name`` or a split word in the file name)
PARQUET = SourceKind("parquet", detect=_detect_parquet, read=_read_row)
