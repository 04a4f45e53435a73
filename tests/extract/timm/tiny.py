"""Tiny random timm models saved to disk (``pretrained=False``; nothing is downloaded).

``vit_dir`` writes the hub layout (``config.json`` + ``model.safetensors``) with timm's own saver;
``vit_file`` / ``resnet_file`` write bare weight files, described by ``--flags``.
"""

from __future__ import annotations

from pathlib import Path

import torch

#: a ViT over 32×32 Fashion-MNIST images: 4×4 patches of 8 pixels, 3 blocks, 32 channels
VIT_ARGS = {"img_size": 32, "patch_size": 8, "depth": 3, "embed_dim": 32, "num_heads": 2}
VIT_FLAGS = "arch=vit_tiny_patch16_224,img_size=32,patch_size=8,depth=3,embed_dim=32,num_heads=2"
#: a ResNet with one block per stage, run on 32×32 inputs
RESNET_FLAGS = "arch=resnet18,layers=1,1,1,1,input_size=32"


def vit(seed: int = 0, num_classes: int = 10) -> torch.nn.Module:
    import timm

    torch.manual_seed(seed)
    return timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=num_classes, **VIT_ARGS).eval()


def resnet(seed: int = 0) -> torch.nn.Module:
    import timm

    torch.manual_seed(seed)
    return timm.create_model("resnet18", pretrained=False, layers=[1, 1, 1, 1], num_classes=10).eval()


def vit_dir(root: Path, seed: int = 0) -> Path:
    """The hub's layout, as timm saves it: config.json (architecture, model_args, pretrained_cfg) and model.safetensors."""
    from timm.models import _hub

    _hub.save_for_hf(vit(seed), str(root), model_args=dict(VIT_ARGS), safe_serialization=True)
    return root


def vit_file(path: Path, seed: int = 0) -> Path:
    torch.save(vit(seed).state_dict(), path)
    return path


def resnet_file(path: Path, seed: int = 0) -> Path:
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in resnet(seed).state_dict().items()}, str(path))
    return path


if __name__ == "__main__":  # the README's example: python -m tests.extract.timm.tiny tiny-vit
    import argparse

    ap = argparse.ArgumentParser(description="Write a tiny random timm ViT in the hub's layout (no download).")
    ap.add_argument("out", type=Path)
    print(f"wrote a tiny random ViT to {vit_dir(ap.parse_args().out)}")
