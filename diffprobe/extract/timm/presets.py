"""The paper's comparison models in timm: which architecture, and which file each expects.

Weights come from ``--checkpoint``: the hub repository's directory (``config.json`` and
``model.safetensors``, as `hf download timm/NAME --local-dir DIR` writes them) or its weight file.
"""

from __future__ import annotations

from diffprobe.extract.presets import Preset, register_preset

_FILE = "model.safetensors (with config.json)"

for _name, _arch, _what in (
    ("mae-vit-b16", "vit_base_patch16_224.mae", "MAE ViT-B/16, self-supervised (He et al. 2022)"),
    ("dino-vit-b16", "vit_base_patch16_224.dino", "DINO ViT-B/16, self-supervised (Caron et al. 2021)"),
    ("dinov2-vit-b14", "vit_base_patch14_dinov2.lvd142m", "DINOv2 ViT-B/14, self-supervised, 518×518 (Oquab et al. 2023)"),
    ("resnet50-sup", "resnet50.tv_in1k", "ResNet-50, supervised on ImageNet-1k (torchvision's weights)"),
    ("clip-vit-b16", "vit_base_patch16_clip_224.openai", "CLIP ViT-B/16 image tower (OpenAI; Radford et al. 2021)"),
):
    register_preset(Preset(_name, "timm", {"arch": _arch, "kwargs": {}}, _FILE, _what, hub=f"timm/{_arch}"))
