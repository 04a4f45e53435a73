"""Published diffusers-format models: their configuration files as released on the Hugging Face hub.

The layouts let ``diffprobe blocks NAME`` print a model's blocks before anything is downloaded; the
weights always come from ``--checkpoint DIR`` (a local copy of the repository). ``best`` records
what the related literature found most discriminative.
"""

from __future__ import annotations

from typing import Any

from diffprobe.extract.presets import Preset, register_preset

_DDPM_SCHEDULER = {"beta_start": 0.0001, "beta_end": 0.02, "beta_schedule": "linear", "num_train_timesteps": 1000}
_LDM_SCHEDULER = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "num_train_timesteps": 1000}

_SD_VAE: dict[str, Any] = {
    "_class_name": "AutoencoderKL",
    "act_fn": "silu",
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "sample_size": 512,
    "scaling_factor": 0.18215,
}

_SD_UNET: dict[str, Any] = {
    "_class_name": "UNet2DConditionModel",
    "act_fn": "silu",
    "attention_head_dim": 8,
    "block_out_channels": [320, 640, 1280, 1280],
    "center_input_sample": False,
    "cross_attention_dim": 768,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    "downsample_padding": 1,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "out_channels": 4,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "sample_size": 64,
}


def _ddpm_unet(channels: list[int], down: list[str], up: list[str], size: int) -> dict[str, Any]:
    return {
        "_class_name": "UNet2DModel",
        "act_fn": "silu",
        "attention_head_dim": None,
        "block_out_channels": channels,
        "center_input_sample": False,
        "down_block_types": down,
        "up_block_types": up,
        "downsample_padding": 0,
        "flip_sin_to_cos": False,
        "freq_shift": 1,
        "in_channels": 3,
        "out_channels": 3,
        "layers_per_block": 2,
        "mid_block_scale_factor": 1,
        "norm_eps": 1e-06,
        "norm_num_groups": 32,
        "sample_size": size,
        "time_embedding_type": "positional",
    }


register_preset(Preset(
    "ddpm-cifar10-32", "diffusers",
    {"model": _ddpm_unet([128, 256, 256, 256], ["DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"],
                         ["UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"], 32),
     "scheduler": _DDPM_SCHEDULER},
    "the repository google/ddpm-cifar10-32", "Ho et al.'s CIFAR-10 32×32 DDPM (pixel space, diffusers' UNet2DModel)",
    hub="google/ddpm-cifar10-32",
))  # fmt: skip
register_preset(Preset(
    "ddpm-ema-church-256", "diffusers",
    {"model": _ddpm_unet([128, 128, 256, 256, 512, 512], ["DownBlock2D"] * 4 + ["AttnDownBlock2D", "DownBlock2D"],
                         ["UpBlock2D", "AttnUpBlock2D"] + ["UpBlock2D"] * 4, 256),
     "scheduler": _DDPM_SCHEDULER},
    "the repository google/ddpm-ema-church-256", "Ho et al.'s LSUN church 256×256 DDPM, EMA weights (pixel space)",
    hub="google/ddpm-ema-church-256",
))  # fmt: skip
register_preset(Preset(
    "sd-1.5", "diffusers",
    {"model": _SD_UNET, "scheduler": _LDM_SCHEDULER, "vae": _SD_VAE, "text": {"len": 77, "dim": 768}},
    "the repository stable-diffusion-v1-5/stable-diffusion-v1-5",
    "Stable Diffusion 1.5, 512×512 (latent; the empty prompt unless --prompt)",
    hub="stable-diffusion-v1-5/stable-diffusion-v1-5",
))  # fmt: skip
register_preset(Preset(
    "sd-2.1-base", "diffusers",
    {"model": {**_SD_UNET, "attention_head_dim": [5, 10, 20, 20], "cross_attention_dim": 1024, "use_linear_projection": True},
     "scheduler": _LDM_SCHEDULER, "vae": _SD_VAE, "text": {"len": 77, "dim": 1024}},
    "the repository stabilityai/stable-diffusion-2-1-base",
    "Stable Diffusion 2.1-base, 512×512 (latent; the empty prompt unless --prompt)",
    hub="stabilityai/stable-diffusion-2-1-base",
    best="DIFT (Tang et al. 2023): up block 1's output (block 19, up_blocks.1.upsamplers.0) at t=261 for semantic correspondence",
))  # fmt: skip
register_preset(Preset(
    "dit-xl-2-256", "diffusers",
    {"model": {"_class_name": "DiTTransformer2DModel", "activation_fn": "gelu-approximate", "attention_bias": True,
               "attention_head_dim": 72, "in_channels": 4, "norm_elementwise_affine": False, "norm_type": "ada_norm_zero",
               "num_attention_heads": 16, "num_embeds_ada_norm": 1000, "num_layers": 28, "out_channels": 8, "patch_size": 2,
               "sample_size": 32, "upcast_attention": False},
     "scheduler": _DDPM_SCHEDULER, "vae": {**_SD_VAE, "sample_size": 256}},
    "the repository facebook/DiT-XL-2-256", "DiT-XL/2, ImageNet 256×256 (latent; the null class unless --class-label)",
    hub="facebook/DiT-XL-2-256",
    best="DDAE (Xiang et al. 2023): block 13 of 28 at t≈81–121 for linear probing",
))  # fmt: skip
