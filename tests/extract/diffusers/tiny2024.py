"""Tiny random SDXL, SD3, Flux.1, SANA and PixArt pipelines in diffusers' directory format (no download).

Every directory has what the published pipeline folder has — the denoiser (``unet/`` or
``transformer/``), ``scheduler/``, ``vae/`` and each text encoder with its tokenizer — with seeded
random weights and tokenizers built offline over single letters (CLIP's BPE files; T5 and Gemma as
``tokenizers`` word-level models that append ``</s>`` or prepend ``<bos>`` as theirs do). Images are
32×32; latents 16×16 (every autoencoder here halves the side once).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

IMAGE = 32
T5_DIM = 48  # wider than CLIP-L ‖ CLIP-G (32): SD3 pads the CLIP states to it
LETTERS = "abcdefghijklmnopqrstuvwxyz"


def clip(root: Path, suffix: str = "", dim: int = 16, projection: bool = False, length: int = 12) -> None:
    """A CLIP tokenizer over single letters and a 2-layer CLIP text encoder (with a projection: ``WithProjection``)."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in LETTERS:
        vocab[c] = len(vocab)
        vocab[c + "</w>"] = len(vocab)
    (root / "vocab.json").write_text(json.dumps(vocab))
    (root / "merges.txt").write_text("#version: 0.2\n")
    CLIPTokenizer(str(root / "vocab.json"), str(root / "merges.txt"), model_max_length=length).save_pretrained(root / f"tokenizer{suffix}")
    (root / "vocab.json").unlink()
    (root / "merges.txt").unlink()
    cfg = CLIPTextConfig(vocab_size=len(vocab), hidden_size=dim, intermediate_size=2 * dim, num_hidden_layers=2, num_attention_heads=2,
                         max_position_embeddings=length, bos_token_id=0, eos_token_id=1, pad_token_id=1, projection_dim=dim)  # fmt: skip
    (CLIPTextModelWithProjection if projection else CLIPTextModel)(cfg).save_pretrained(root / f"text_encoder{suffix}")


def _word_tokenizer(folder: Path, template: str, length: int) -> int:
    """A letter-level tokenizer with ``template`` ("$A </s>" or "<bos> $A"); returns its vocabulary size."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, "<bos>": 3, **{c: 4 + i for i, c in enumerate(LETTERS)}}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    tk.post_processor = processors.TemplateProcessing(single=template, special_tokens=[("</s>", 1), ("<bos>", 3)])
    PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", eos_token="</s>", unk_token="<unk>", bos_token="<bos>",
                            model_max_length=length).save_pretrained(folder)  # fmt: skip
    return len(vocab)


def t5(root: Path, suffix: str = "", dim: int = T5_DIM, length: int = 16) -> None:
    """A T5 tokenizer (letters, then ``</s>``) and a 2-layer ``T5EncoderModel``."""
    from transformers import T5Config, T5EncoderModel

    n = _word_tokenizer(root / f"tokenizer{suffix}", "$A </s>", length)
    cfg = T5Config(vocab_size=n, d_model=dim, d_kv=8, d_ff=2 * dim, num_layers=2, num_heads=2, relative_attention_num_buckets=8,
                   pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)  # fmt: skip
    T5EncoderModel(cfg).save_pretrained(root / f"text_encoder{suffix}")


def gemma(root: Path, dim: int = 16, length: int = 16) -> None:
    """A Gemma tokenizer (``<bos>``, then letters) and a 2-layer ``Gemma2Model``."""
    from transformers import Gemma2Config, Gemma2Model

    n = _word_tokenizer(root / "tokenizer", "<bos> $A", length)
    cfg = Gemma2Config(vocab_size=n, hidden_size=dim, intermediate_size=2 * dim, num_hidden_layers=2, num_attention_heads=2,
                       num_key_value_heads=1, head_dim=8, pad_token_id=0, bos_token_id=3, eos_token_id=1,
                       max_position_embeddings=64, sliding_window=16)  # fmt: skip
    Gemma2Model(cfg).save_pretrained(root / "text_encoder")


def kl_vae(root: Path, channels: int = 4, scaling: float = 0.5, shift: float | None = None) -> None:
    from diffusers import AutoencoderKL

    AutoencoderKL(in_channels=3, out_channels=3, latent_channels=channels, block_out_channels=(8, 16), layers_per_block=1,
                  down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2, norm_num_groups=4,
                  sample_size=IMAGE, scaling_factor=scaling, shift_factor=shift,
                  use_quant_conv=shift is None, use_post_quant_conv=shift is None).save_pretrained(root / "vae")  # fmt: skip


def _index(root: Path, cls: str, **extra: object) -> None:
    (root / "model_index.json").write_text(json.dumps({"_class_name": cls, **extra}))


def sdxl_dir(root: Path, seed: int = 0) -> Path:
    """SDXL: a text-time U-Net, CLIP-L + CLIP-G (projected), scaled-linear β, zeros for the empty prompt."""
    from diffusers import EulerDiscreteScheduler, UNet2DConditionModel

    torch.manual_seed(seed)
    UNet2DConditionModel(sample_size=IMAGE // 2, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(16, 32),
                         down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
                         cross_attention_dim=32, attention_head_dim=4, transformer_layers_per_block=(1, 2), norm_num_groups=8,
                         use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=8,
                         projection_class_embeddings_input_dim=16 + 6 * 8).save_pretrained(root / "unet")  # fmt: skip
    kl_vae(root, scaling=0.13025)
    EulerDiscreteScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012).save_pretrained(root / "scheduler")
    clip(root)
    clip(root, "_2", projection=True)
    _index(root, "StableDiffusionXLPipeline", force_zeros_for_empty_prompt=True)
    return root


def sd3_dir(root: Path, seed: int = 0, t5_encoder: bool = True) -> Path:
    """SD3.5-style MM-DiT (QK RMS-norm, one dual-attention block), a 16-channel VAE with a shift, CLIP-L, CLIP-G, T5."""
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel

    torch.manual_seed(seed)
    SD3Transformer2DModel(sample_size=IMAGE // 2, patch_size=2, in_channels=16, out_channels=16, num_layers=3, attention_head_dim=8,
                          num_attention_heads=2, joint_attention_dim=T5_DIM, caption_projection_dim=16, pooled_projection_dim=32,
                          pos_embed_max_size=16, qk_norm="rms_norm", dual_attention_layers=(0,)).save_pretrained(root / "transformer")  # fmt: skip
    kl_vae(root, channels=16, scaling=1.5305, shift=0.0609)
    FlowMatchEulerDiscreteScheduler(shift=3.0).save_pretrained(root / "scheduler")
    clip(root, projection=True)
    clip(root, "_2", projection=True)
    if t5_encoder:
        t5(root, "_3")
    _index(root, "StableDiffusion3Pipeline")
    return root


def flux_dir(root: Path, seed: int = 0, guidance: bool = True) -> Path:
    """Flux.1-dev-style: one joint and two single blocks, guidance embedding, dynamic σ shift, CLIP-L + T5."""
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxTransformer2DModel

    torch.manual_seed(seed)
    FluxTransformer2DModel(patch_size=1, in_channels=64, num_layers=1, num_single_layers=2, attention_head_dim=8, num_attention_heads=2,
                           joint_attention_dim=T5_DIM, pooled_projection_dim=16, guidance_embeds=guidance,
                           axes_dims_rope=(2, 2, 4)).save_pretrained(root / "transformer")  # fmt: skip
    kl_vae(root, channels=16, scaling=0.3611, shift=0.1159)
    FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=guidance, base_shift=0.5, max_shift=1.15,
                                    base_image_seq_len=256, max_image_seq_len=4096).save_pretrained(root / "scheduler")  # fmt: skip
    clip(root)
    t5(root, "_2")
    _index(root, "FluxPipeline")
    return root


def sana_dir(root: Path, seed: int = 0) -> Path:
    """SANA: linear-attention DiT over a deep-compression autoencoder, Gemma-2, flow σ shift 3 (DPM-Solver's flow_shift)."""
    from diffusers import AutoencoderDC, DPMSolverMultistepScheduler, SanaTransformer2DModel

    torch.manual_seed(seed)
    SanaTransformer2DModel(in_channels=8, out_channels=8, num_attention_heads=2, attention_head_dim=8, num_layers=2,
                           num_cross_attention_heads=2, cross_attention_head_dim=8, cross_attention_dim=16, caption_channels=16,
                           mlp_ratio=2.5, patch_size=1, sample_size=IMAGE // 2).save_pretrained(root / "transformer")  # fmt: skip
    AutoencoderDC(in_channels=3, latent_channels=8, attention_head_dim=4, encoder_block_types=("ResBlock", "EfficientViTBlock"),
                  decoder_block_types=("ResBlock", "EfficientViTBlock"), encoder_block_out_channels=(8, 16),
                  decoder_block_out_channels=(8, 16), encoder_layers_per_block=(1, 1), decoder_layers_per_block=(1, 1),
                  encoder_qkv_multiscales=((), (5,)), decoder_qkv_multiscales=((), (5,)), downsample_block_type="Conv",
                  upsample_block_type="interpolate", decoder_norm_types="rms_norm", decoder_act_fns="silu",
                  scaling_factor=0.41407).save_pretrained(root / "vae")  # fmt: skip
    DPMSolverMultistepScheduler(flow_shift=3.0, use_flow_sigmas=True, prediction_type="flow_prediction").save_pretrained(root / "scheduler")
    gemma(root)
    _index(root, "SanaPipeline")
    return root


def pixart_dir(root: Path, seed: int = 0) -> Path:
    """PixArt-α-style (width 24: its resolution and aspect-ratio embeddings take a third each): DiT blocks with cross-attention to T5, resolution/aspect-ratio conditions, linear β."""
    from diffusers import DPMSolverMultistepScheduler, PixArtTransformer2DModel

    torch.manual_seed(seed)
    PixArtTransformer2DModel(num_attention_heads=3, attention_head_dim=8, in_channels=4, out_channels=8, num_layers=2, patch_size=2,
                             sample_size=IMAGE // 2, caption_channels=T5_DIM, cross_attention_dim=24,
                             use_additional_conditions=True).save_pretrained(root / "transformer")  # fmt: skip
    kl_vae(root, scaling=0.18215)
    DPMSolverMultistepScheduler(beta_schedule="linear", beta_start=0.0001, beta_end=0.02).save_pretrained(root / "scheduler")
    t5(root)
    _index(root, "PixArtAlphaPipeline")
    return root


def dinov2_dir(root: Path, seed: int = 0) -> Path:
    """A tiny random DINOv2-architecture ViT (timm's ``vit_small_patch14_dinov2``: 14-pixel patches, layer
    scale, register-free) in the hub's layout, for CKA against a diffusion block (docs/models-2024.md)."""
    import timm
    from timm.models import _hub

    args = {"img_size": 56, "patch_size": 14, "depth": 3, "embed_dim": 32, "num_heads": 2}
    torch.manual_seed(seed)
    net = timm.create_model("vit_small_patch14_dinov2", pretrained=False, num_classes=0, **args).eval()
    _hub.save_for_hf(net, str(root), model_args=args, safe_serialization=True)
    return root


BUILDERS = {"sdxl": sdxl_dir, "sd3": sd3_dir, "flux": flux_dir, "sana": sana_dir, "pixart": pixart_dir}

if __name__ == "__main__":  # python -m tests.extract.diffusers.tiny2024 sd3 tiny-sd3
    import argparse

    ap = argparse.ArgumentParser(description="Write a tiny random diffusers pipeline directory (no download).")
    ap.add_argument("kind", choices=[*sorted(BUILDERS), "dinov2"])
    ap.add_argument("out", type=Path)
    a = ap.parse_args()
    {**BUILDERS, "dinov2": dinov2_dir}[a.kind](a.out)
    print(f"wrote a tiny random {a.kind} model to {a.out}")
