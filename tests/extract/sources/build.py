"""Data sets in other formats, built from the bundled Fashion-MNIST slice: tar shards, manifests
that list the same images under the same ids, Hugging Face datasets on disk."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

from tests.helpers import FMNIST

CLASSES = sorted(p.name for p in (FMNIST / "train").iterdir() if p.is_dir())


def images(split: str, per_class: int) -> list[tuple[str, Path, int]]:
    """(key, file, label) of the first ``per_class`` images of each class; the key is the file's
    relative path without its extension (a WebDataset key: no dot in its base name)."""
    out = []
    for label, cls in enumerate(CLASSES):
        for f in sorted((FMNIST / split / cls).glob("*.png"))[:per_class]:
            out.append((f"{cls}/{f.stem}", f, label))
    return out


def add(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tf.addfile(info, io.BytesIO(data))


def write_shards(root: Path, prefix: str, rows: list[tuple[str, Path, int]], per_shard: int, label: str = "cls") -> list[Path]:
    """``root/prefix-000000.tar`` … with members KEY.png and KEY.cls (or KEY.json {"label": …}, or no label)."""
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for s in range(0, len(rows), per_shard):
        path = root / f"{prefix}-{s // per_shard:06d}.tar"
        with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tf:
            for key, f, lab in rows[s : s + per_shard]:
                add(tf, f"{key}.png", f.read_bytes())
                if label == "cls":
                    add(tf, f"{key}.cls", str(lab).encode())
                elif label == "json":
                    add(tf, f"{key}.json", f'{{"label": {lab}, "source": "fmnist"}}'.encode())
        paths.append(path)
    return paths


def write_manifest(path: Path, splits: dict[str, list[tuple[str, Path, int]]]) -> Path:
    """A manifest of the same images with ids = keys and labels = class indices."""
    lines = ["path,label,split,id"] + [f"{f},{lab},{split},{key}" for split, rows in splits.items() for key, f, lab in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def hf_dataset(splits: dict[str, list[tuple[str, Path, int]]]):
    """A ``datasets.DatasetDict`` of the images (Image feature), ClassLabel labels and key ids."""
    import datasets

    feats = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=[str(i) for i in range(len(CLASSES))]),
                               "key": datasets.Value("string")})  # fmt: skip
    return datasets.DatasetDict({
        split: datasets.Dataset.from_dict({"image": [{"bytes": f.read_bytes(), "path": None} for _, f, _ in rows],
                                           "label": [lab for _, _, lab in rows], "key": [k for k, _, _ in rows]}, features=feats)
        for split, rows in splits.items()
    })  # fmt: skip
