"""What the benchmarks run on: the device's name for their headers, the model and block the forward
benchmarks time (random weights: the paper's 256 model at block 24 on a GPU, the bundled small
architecture on a CPU), and the bundled image slice, whole or in part."""

from __future__ import annotations

from pathlib import Path

import torch

import diffprobe


def device_label(device: torch.device) -> str:
    """``NVIDIA H200``, or ``CPU (2 threads)``."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"


def default_model(device: torch.device) -> str:
    """The preset a benchmark times when not told: adm-256-uncond on a GPU, adm-32-fmnist elsewhere."""
    return "adm-256-uncond" if device.type == "cuda" else "adm-32-fmnist"


def random_model(model: str | None, block: int | None, device: torch.device) -> tuple[str, diffprobe.Backbone, int]:
    """(preset, backbone with random weights on ``device``, block): ``block`` defaults to the
    paper's 24 for 37-block models, else the middle block + 3."""
    model = model or default_model(device)
    bb = diffprobe.load_backbone(model, random_weights=True, device=device)
    return model, bb, block or (24 if len(bb.blocks) == 37 else len(bb.blocks) // 2 + 4)


def slice_manifest(folder: Path, per_class: tuple[int, int] | None) -> Path:
    """The bundled Fashion-MNIST slice itself, or a manifest (in ``folder``) of its first
    ``per_class`` = (train, val) images of each class."""
    from diffprobe.pipelines.demo import DEMO_DATA

    if per_class is None:
        return DEMO_DATA
    (folder / "fmnist").symlink_to(DEMO_DATA, target_is_directory=True)
    rows = ["path,label,split"]
    for split, per in zip(("train", "val"), per_class):
        for cls in sorted(p for p in (DEMO_DATA / split).iterdir() if p.is_dir()):
            rows += [f"fmnist/{split}/{cls.name}/{f.name},{cls.name},{split}" for f in sorted(cls.glob("*.png"))[:per]]
    manifest = folder / "fmnist.csv"
    manifest.write_text("\n".join(rows) + "\n")
    return manifest
