"""Tiny random diffusers models, saved in diffusers' directory format (no download anywhere).

Each builder writes a pipeline-style directory — ``unet/`` or ``transformer/``, ``scheduler/``, and
``vae/``, ``text_encoder/`` and ``tokenizer/`` where the kind needs them — with seeded weights.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

IMAGE = 32  # pixel side of every tiny model (latent models: 16×16 latents)


def _seeded(seed: int):
    torch.manual_seed(seed)


def ddpm_dir(root: Path, seed: int = 0) -> Path:
    """UNet2DModel (pixel space) with an attention down block and up block, linear β."""
    from diffusers import DDPMScheduler, UNet2DModel

    _seeded(seed)
    UNet2DModel(sample_size=IMAGE, in_channels=3, out_channels=3, layers_per_block=1, block_out_channels=(16, 32),
                down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
                norm_num_groups=8, attention_head_dim=8).save_pretrained(root / "unet")  # fmt: skip
    DDPMScheduler(beta_schedule="linear", beta_start=1e-4, beta_end=0.02).save_pretrained(root / "scheduler")
    return root


def _vae(root: Path) -> None:
    from diffusers import AutoencoderKL

    AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 16), layers_per_block=1,
                  down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                  norm_num_groups=4, sample_size=IMAGE, scaling_factor=0.5).save_pretrained(root / "vae")  # fmt: skip


def tokenizer_and_text_encoder(root: Path, dim: int = 16, length: int = 12) -> None:
    """A CLIP tokenizer over single letters and a 2-layer CLIP text encoder."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in "abcdefghijklmnopqrstuvwxyz":
        vocab[c] = len(vocab)
        vocab[c + "</w>"] = len(vocab)
    (root / "vocab.json").write_text(json.dumps(vocab))
    (root / "merges.txt").write_text("#version: 0.2\n")
    CLIPTokenizer(str(root / "vocab.json"), str(root / "merges.txt"), model_max_length=length).save_pretrained(root / "tokenizer")
    (root / "vocab.json").unlink()
    (root / "merges.txt").unlink()
    cfg = CLIPTextConfig(vocab_size=len(vocab), hidden_size=dim, intermediate_size=2 * dim, num_hidden_layers=2, num_attention_heads=2,
                         max_position_embeddings=length, bos_token_id=0, eos_token_id=1, pad_token_id=1)  # fmt: skip
    CLIPTextModel(cfg).save_pretrained(root / "text_encoder")


def sd_dir(root: Path, seed: int = 0, text: bool = True) -> Path:
    """UNet2DConditionModel + AutoencoderKL (+ CLIP tokenizer and text encoder), scaled-linear β."""
    from diffusers import DDIMScheduler, UNet2DConditionModel

    _seeded(seed)
    UNet2DConditionModel(sample_size=IMAGE // 2, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(16, 32),
                         down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
                         cross_attention_dim=16, attention_head_dim=4, norm_num_groups=8).save_pretrained(root / "unet")  # fmt: skip
    _vae(root)
    DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False, steps_offset=1).save_pretrained(root / "scheduler")
    if text:
        tokenizer_and_text_encoder(root)
    return root


def dit_dir(root: Path, seed: int = 0) -> Path:
    """DiTTransformer2DModel (patch 2 over 16×16 latents, 10 classes) + AutoencoderKL, linear β."""
    from diffusers import DDPMScheduler, DiTTransformer2DModel

    _seeded(seed)
    DiTTransformer2DModel(num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=8, num_layers=3, patch_size=2,
                          sample_size=IMAGE // 2, num_embeds_ada_norm=10).save_pretrained(root / "transformer")  # fmt: skip
    _vae(root)
    DDPMScheduler(beta_schedule="linear").save_pretrained(root / "scheduler")
    return root


if __name__ == "__main__":  # the README's demo-sized example: python -m tests.extract.diffusers.tiny sd tiny-sd
    import argparse

    ap = argparse.ArgumentParser(description="Write a tiny random diffusers model directory (no download).")
    ap.add_argument("kind", choices=("ddpm", "sd", "dit"))
    ap.add_argument("out", type=Path)
    a = ap.parse_args()
    {"ddpm": ddpm_dir, "sd": sd_dir, "dit": dit_dir}[a.kind](a.out)
    print(f"wrote a tiny random {a.kind} model to {a.out}")
