"""What a data source needs to be told: label field, split, columns."""

from __future__ import annotations

import re
from dataclasses import dataclass

#: names that mark a split in a file name (``imagenet-val-000012.tar``) or a folder
SPLIT_WORDS = ("train", "val", "valid", "validation", "test")


@dataclass(frozen=True)
class DataOptions:
    """How to read a tar or table source (folders and manifests need none of it).

    Attributes:
        label_field: tars: the field of a sample's ``json`` member holding its label, used when the
            sample has no ``cls`` member.
        split: tars and Parquet files: the split of every file (default: a split word in the file
            name, else ``train``).
        image_column, label_column: tables: the columns holding the image and its label (None: no labels).
        id_column: tables: the column of item ids (None: the row index, ``row-00000042``).
    """

    label_field: str = "label"
    split: str | None = None
    image_column: str = "image"
    label_column: str | None = "label"
    id_column: str | None = None


def split_of(name: str, options: DataOptions, default: str = "train") -> str:
    """The split of a file: the option, else a split word among the name's ``-``/``_``/``.`` parts."""
    if options.split:
        return options.split
    words = re.split(r"[-_.]", name.lower())
    return next((w for w in words if w in SPLIT_WORDS), default)
