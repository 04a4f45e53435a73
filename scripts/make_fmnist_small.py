"""Write diffprobe/assets/fmnist-small.csv: a small manifest over the bundled Fashion-MNIST slice.

It lists the first 10 train and the first 5 val images of each class of ``diffprobe/assets/fmnist/``
(150 images), by paths relative to the manifest, with each image's ImageFolder id (the path below
its split folder) so that its noise, and so its features, equal those of the same image extracted
from the folder. The documentation's examples run on it (``tests/docs/test_examples.py``).

Run: python scripts/make_fmnist_small.py
"""

from __future__ import annotations

import csv
from pathlib import Path

ASSETS = Path(__file__).resolve().parents[1] / "diffprobe" / "assets"
PER_CLASS = {"train": 10, "val": 5}


def main() -> None:
    rows = []
    for split, n in PER_CLASS.items():
        for cls in sorted(p for p in (ASSETS / "fmnist" / split).iterdir() if p.is_dir()):
            for img in sorted(cls.glob("*.png"))[:n]:
                rel = img.relative_to(ASSETS).as_posix()
                rows.append({"path": rel, "label": cls.name, "split": split, "id": f"{cls.name}/{img.name}"})
    out = ASSETS / "fmnist-small.csv"
    with open(out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["path", "label", "split", "id"], lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    print(f"wrote {out} ({len(rows)} images)")


if __name__ == "__main__":
    main()
