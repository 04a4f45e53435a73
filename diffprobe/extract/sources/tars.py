"""WebDataset tar shards: an index of every sample, built once by reading the tar headers.

A sample is the run of consecutive members sharing a key (the member name up to the first dot of
its base name): one image member, and optionally ``cls`` (the label as an integer) or ``json`` (the
label in a field). Ids are the keys; a key found in several shards is prefixed by its shard's name.
Items keep the shards' order, so units, loader batches and dask workers read each tar forward.
The index is cached in a JSON file beside the store and rebuilt for any shard whose size or
modification time changed.
"""

from __future__ import annotations

import io
import json
import logging
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from diffprobe.errors import DataError
from diffprobe.extract.sources.files import cached, is_url, open_binary
from diffprobe.extract.sources.item import IMAGE_EXTENSIONS, DataSpec, Item, name_labels
from diffprobe.extract.sources.kinds import SourceKind, Target
from diffprobe.extract.sources.options import DataOptions, split_of

log = logging.getLogger(__name__)

INDEX_VERSION = 1
_IMAGE_EXTS = tuple(e.lstrip(".") for e in sorted(IMAGE_EXTENSIONS))


def _signature(path: str) -> dict[str, Any]:
    if not is_url(path):
        st = os.stat(path)
        return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
    import fsspec

    fs, p = fsspec.core.url_to_fs(path)
    info = fs.info(p)
    return {"size": info.get("size"), "etag": str(info.get("ETag") or info.get("etag") or info.get("mtime") or "")}


def _split_name(name: str) -> tuple[str, str]:
    """(key, extension) of a member: ``dir/n0144_10026.cls`` → (dir/n0144_10026, cls)."""
    pp = PurePosixPath(name)
    base, _, ext = pp.name.partition(".")
    return (str(pp.parent / base) if str(pp.parent) != "." else base), ext.lower()


def _members(path: str, size: int) -> Iterator[tuple[tarfile.TarInfo, Any]]:
    """Every regular member with the open tar, checking that the archive is whole.

    Raises:
        DataError: the tar is cut short (names the member and byte offset) or unreadable.
    """
    with open_binary(path) as f:
        try:
            tf = tarfile.open(fileobj=f, mode="r:")
        except tarfile.ReadError as e:
            raise DataError(f"{path} is not a readable (uncompressed) tar: {e}") from None
        end = 0
        try:
            for m in tf:
                if m.isfile():
                    if m.offset_data + m.size > size:
                        raise DataError(f"{path} is truncated: member {m.name!r} at byte {m.offset_data} needs {m.size} bytes, "
                                        f"the file ends at byte {size}")  # fmt: skip
                    yield m, tf
                end = tf.offset
        except (tarfile.TarError, EOFError) as e:
            raise DataError(f"{path} is corrupt after byte {end}: {e}") from None
        f.seek(end)
        rest = f.read(1 << 16)
        if rest.strip(b"\0"):
            raise DataError(f"{path} is truncated or corrupt at byte {end}: the data there is not a tar header")


def _label(raw: bytes, ext: str, field: str, where: str) -> int | str | None:
    try:
        if ext == "cls":
            return int(raw.decode().strip())
        value = json.loads(raw).get(field)
    except (ValueError, UnicodeDecodeError, AttributeError) as e:
        raise DataError(f"{where}: cannot read the label from its {ext} member ({e})") from None
    return value if isinstance(value, (int, str)) or value is None else str(value)


def scan(path: str, size: int, field: str) -> list[list[Any]]:
    """[key, image extension, data offset, size, label or None] of every sample with an image."""
    samples: list[list[Any]] = []
    cur: dict[str, Any] | None = None
    seen: set[str] = set()

    def close() -> None:
        if cur is not None:
            if cur["image"] is None:
                log.warning("%s: sample %r has no image member; skipped", path, cur["key"])
            else:
                samples.append([cur["key"], *cur["image"], cur["label"]])

    for m, tf in _members(path, size):
        key, ext = _split_name(m.name)
        if cur is None or key != cur["key"]:
            close()
            if key in seen:
                raise DataError(f"{path}: key {key!r} appears twice, apart (a sample's members must be consecutive)")
            seen.add(key)
            cur = {"key": key, "image": None, "label": None}
        last = ext.rsplit(".", 1)[-1]
        if last in _IMAGE_EXTS and cur["image"] is None:
            cur["image"] = (ext, m.offset_data, m.size)
        elif last in ("cls", "json") and (cur["label"] is None or last == "cls"):
            raw = tf.extractfile(m).read()  # type: ignore[union-attr]
            cur["label"] = _label(raw, last, field, f"{path}, sample {key!r}")
    close()
    return samples


def load_index(files: list[str], options: DataOptions, index: Path | None, write: bool = True) -> dict[str, list[list[Any]]]:
    """{tar: samples}, from the cache at ``index`` where a tar is unchanged, else by scanning it (and
    then, when ``write``, caching the result there)."""
    cached: dict[str, Any] = {}
    if index is not None and index.is_file():
        try:
            doc = json.loads(index.read_text())
            if doc.get("version") == INDEX_VERSION and doc.get("label_field") == options.label_field:
                cached = doc["tars"]
        except (OSError, ValueError, KeyError):
            log.warning("tar index %s is unreadable; rebuilding it", index)
    out: dict[str, Any] = {}
    scanned = 0
    for path in files:
        try:
            sig = _signature(path)
        except FileNotFoundError:
            raise DataError(f"tar shard not found: {path}") from None
        hit = cached.get(path)
        if hit is not None and hit["signature"] == sig:
            out[path] = hit
        else:
            out[path] = {"signature": sig, "samples": scan(path, int(sig["size"]), options.label_field)}
            scanned += 1
    if scanned:
        log.info("indexed %d of %d tar shard(s)%s", scanned, len(files), f" (cached in {index})" if index and write else "")
        if index is not None and write:
            tmp = index.with_name(index.name + ".tmp")
            tmp.write_text(json.dumps({"version": INDEX_VERSION, "label_field": options.label_field, "tars": out}))
            os.replace(tmp, index)
    return {p: v["samples"] for p, v in out.items()}


def tar_shards(files: list[str], options: DataOptions, index: Path | None, write_index: bool = True) -> DataSpec:
    """The items of WebDataset shards ``files`` (in that order, members in tar order)."""
    per_tar = load_index(files, options, index, write_index)
    names, to_index = name_labels({s[4] for samples in per_tar.values() for s in samples if s[4] is not None})
    count: dict[tuple[str, str], int] = {}
    for path, samples in per_tar.items():
        split = split_of(Path(path).name, options)
        for s in samples:
            count[(split, s[0])] = count.get((split, s[0]), 0) + 1
    spec = DataSpec(names, source={"kind": "webdataset", "ids": "__key__ (shard/__key__ where a key repeats)"})
    splits: dict[str, list[Item]] = {}  # each split's items, built here (spec.splits takes them at the end)
    for path, samples in per_tar.items():
        split, stem = split_of(Path(path).name, options), Path(path.split("?")[0]).name.removesuffix(".tar")
        items = splits.setdefault(split, [])
        for key, ext, offset, size, label in samples:
            item_id = f"{stem}/{key}" if count[(split, key)] > 1 else key
            items.append(Item(item_id, path, to_index.get(label, -1) if label is not None else -1, "tar", offset, size, ext))
    spec.splits.update(splits)
    if not spec.splits:
        raise DataError(f"no samples with an image member in {len(files)} tar shard(s) ({files[0]} …)")
    return spec


def read_member(item: Item) -> io.BytesIO:
    """The bytes of a tar member, through this thread's open handle on its tar.

    Raises:
        OSError: the member is shorter than the index says (the tar changed or was cut).
    """
    f = cached("tar", item.path, lambda: open_binary(item.path), per_thread=True)
    f.seek(item.offset)
    data = f.read(item.size)
    if len(data) != item.size:
        raise OSError(f"{item.path}: member at byte {item.offset} has {len(data)} of its {item.size} bytes (the tar is truncated)")
    return io.BytesIO(data)


def _detect(target: Target, options: DataOptions) -> DataSpec | None:
    files = target.shards(".tar")
    return None if files is None else tar_shards(files, options, target.index, target.write_index)


#: WebDataset tar shards
SOURCE = SourceKind("tar", detect=_detect, read=read_member)
