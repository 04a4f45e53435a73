"""A diffusers model directory on disk: which folder holds which component, and its weights."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from diffprobe.errors import CheckpointError, CheckpointNotFoundError
from diffprobe.extract.checkpoint import file_sha256

#: Weight files in the order diffusers and transformers prefer them (safetensors first).
WEIGHT_NAMES = ("diffusion_pytorch_model.safetensors", "model.safetensors", "diffusion_pytorch_model.bin", "pytorch_model.bin")
INDEX_SUFFIX = ".index.json"


@dataclass(frozen=True)
class ModelDir:
    """The folders of one model: a pipeline layout (``unet/`` or ``transformer/``, ``scheduler/``,
    ``vae/``, ``text_encoder/``, ``tokenizer/``) or a single model's folder (``config.json`` and
    its weights, optionally ``scheduler_config.json`` beside them)."""

    root: Path
    denoiser: Path
    scheduler: Path | None  # the scheduler_config.json file
    vae: Path | None
    text_encoder: Path | None
    tokenizer: Path | None

    @classmethod
    def read(cls, root: Path) -> ModelDir:
        """Find the components under ``root``.

        Raises:
            CheckpointNotFoundError: ``root`` does not exist.  CheckpointError: it is not a
                diffusers model directory.
        """
        if not root.exists():
            raise CheckpointNotFoundError(f"checkpoint directory not found: {root}; check the path")
        if not root.is_dir():
            raise CheckpointError(f"{root} is a file; a diffusers model is a directory (with unet/ or transformer/, "
                                  "or a config.json beside the weights)")  # fmt: skip
        denoiser = next((root / d for d in ("unet", "transformer") if (root / d / "config.json").is_file()), None)
        if denoiser is None and (root / "config.json").is_file():
            denoiser = root
        if denoiser is None:
            raise CheckpointError(f"{root} is not a diffusers model directory: no unet/config.json, transformer/config.json "
                                  "or config.json (save one with `model.save_pretrained(DIR)` or download it with `hf download`)")  # fmt: skip
        sched = next((p for p in (root / "scheduler" / "scheduler_config.json", root / "scheduler_config.json") if p.is_file()), None)

        def folder(name: str) -> Path | None:
            p = root / name
            return p if p.is_dir() else None

        return cls(root, denoiser, sched, folder("vae"), folder("text_encoder"), folder("tokenizer"))

    def part(self, name: str) -> Path | None:
        """The pipeline's folder ``name`` (``text_encoder_2``, ``tokenizer_3`` …), if there is one."""
        p = self.root / name
        return p if p.is_dir() else None

    def pipeline_config(self) -> dict[str, Any]:
        """The pipeline's ``model_index.json`` ({} without one): its own settings, such as SDXL's
        ``force_zeros_for_empty_prompt``."""
        p = self.root / "model_index.json"
        return read_json(p) if p.is_file() else {}


def read_json(path: Path) -> dict[str, Any]:
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError) as e:
        raise CheckpointError(f"cannot read {path} as a JSON configuration: {e}") from None


def weight_files(folder: Path) -> list[Path]:
    """The weight file(s) a component loads: one file, or a sharded index and its shards.

    Raises:
        CheckpointError: the folder holds no weights (the message lists what it has).
    """
    for name in WEIGHT_NAMES:
        if (folder / name).is_file():
            return [folder / name]
        index = folder / (name + INDEX_SUFFIX)
        if index.is_file():
            shards = sorted(set(read_json(index).get("weight_map", {}).values()))
            missing = [s for s in shards if not (folder / s).is_file()]
            if missing:
                raise CheckpointError(f"{index} lists shards that are missing: {', '.join(missing[:3])}")
            return [index, *(folder / s for s in shards)]
    have = ", ".join(sorted(p.name for p in folder.iterdir())[:8]) or "nothing"
    raise CheckpointError(f"no weights in {folder}: expected one of {', '.join(WEIGHT_NAMES)} (it has {have})")


def uses_safetensors(folder: Path) -> bool:
    """Whether the component's preferred weights are safetensors (else a pickle-free ``.bin`` read)."""
    return ".safetensors" in weight_files(folder)[0].name


def tree_sha256(root: Path, files: list[Path]) -> str:
    """One sha256 over ``files`` (their paths relative to ``root`` and their contents' sha256)."""
    h = hashlib.sha256()
    for f in sorted(files):
        h.update(f"{f.relative_to(root).as_posix()} {file_sha256(f)}\n".encode())
    return h.hexdigest()
