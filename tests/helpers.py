"""Paths and helpers shared by the tests (the fixtures built from them are in conftest.py).

Test data in tests/data/ comes from ../shared/golden (see tests/data/README.md). Nothing here
depends on where the repository is cloned: manifests name images by paths relative to themselves,
so item ids (which seed the noise) are the same in every checkout.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

DATA = Path(__file__).parent / "data"
ASSETS = Path(__file__).parent.parent / "diffprobe" / "assets"
FMNIST = ASSETS / "fmnist"
FMNIST_CKPT = ASSETS / "adm32_fmnist_ema.pt"
MINI_CKPT = DATA / "adm64_mini_random.pt"


def golden(name: str) -> dict[str, np.ndarray]:
    with np.load(DATA / f"{name}_golden.npz") as z:
        return {k: z[k] for k in z.files}


def make_manifest(path: Path, per_class_train: int = 10, per_class_val: int = 5) -> Path:
    """A CSV manifest over a stratified subset of the bundled Fashion-MNIST slice.

    The slice is linked beside the manifest as ``fmnist/`` and listed by relative paths, so item ids
    (``fmnist/train/0_tshirt_top/…``) do not depend on where the repository lives.
    """
    link = path.parent / "fmnist"
    if not link.exists():
        link.symlink_to(FMNIST, target_is_directory=True)
    rows = ["path,label,split"]
    for split, per in (("train", per_class_train), ("val", per_class_val)):
        for cls in sorted(p for p in (FMNIST / split).iterdir() if p.is_dir()):
            for f in sorted(cls.glob("*.png"))[:per]:
                rows.append(f"fmnist/{split}/{cls.name}/{f.name},{cls.name},{split}")
    path.write_text("\n".join(rows) + "\n")
    return path


def extract_config(data: Any, out: Any, **kw: Any) -> Any:
    import diffprobe

    base = dict(
        data=str(data), out=str(out), model="adm-32-fmnist", checkpoint=str(FMNIST_CKPT),
        timesteps=(50, 150), blocks=(10, 13), pools=(1, 2), batch_size=16, loader_workers=0,
    )  # fmt: skip
    base.update(kw)
    return diffprobe.ExtractConfig(**base)


def read_all(path: Any) -> dict:
    import diffprobe

    with diffprobe.open_store(path) as s:
        return {(sp, k): s.read(sp, k) for sp in s.splits for k in s.keys(sp)}
