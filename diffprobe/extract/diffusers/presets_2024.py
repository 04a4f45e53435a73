"""Published text-to-image models people probe today: SDXL, SD3/3.5, Flux.1, SANA and PixArt-α/Σ.

Each layout is the configuration released with the model (the denoiser's, the scheduler's noise
fields, the autoencoder's), so that ``diffprobe blocks NAME`` measures the blocks on the meta device
before anything is downloaded; the weights, text encoders and tokenizers come from ``--checkpoint DIR``
(a local copy of the repository). "condition" gives the text condition's settings: the null
condition ("empty": the model's text encoders on the empty prompt; "zeros": the zero condition the
model was trained to drop its text to and its pipeline feeds for the empty prompt) and the token count.
"""

from __future__ import annotations

from typing import Any

from diffprobe.extract.presets import Preset, register_preset

_KL_BLOCKS: dict[str, Any] = {
    "_class_name": "AutoencoderKL", "act_fn": "silu", "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4, "up_block_types": ["UpDecoderBlock2D"] * 4, "in_channels": 3, "out_channels": 3,
    "layers_per_block": 2, "norm_num_groups": 32, "sample_size": 1024, "force_upcast": True,
}  # fmt: skip
_SDXL_VAE = {**_KL_BLOCKS, "latent_channels": 4, "scaling_factor": 0.13025}
_SD3_VAE = {
    **_KL_BLOCKS,
    "latent_channels": 16,
    "scaling_factor": 1.5305,
    "shift_factor": 0.0609,
    "use_quant_conv": False,
    "use_post_quant_conv": False,
}
_FLUX_VAE = {
    **_KL_BLOCKS,
    "latent_channels": 16,
    "scaling_factor": 0.3611,
    "shift_factor": 0.1159,
    "use_quant_conv": False,
    "use_post_quant_conv": False,
}
_SD_VAE = {**_KL_BLOCKS, "latent_channels": 4, "scaling_factor": 0.18215, "sample_size": 512}
_LDM = {
    "_class_name": "EulerDiscreteScheduler",
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
}
_DDPM = {
    "_class_name": "DPMSolverMultistepScheduler",
    "beta_start": 0.0001,
    "beta_end": 0.02,
    "beta_schedule": "linear",
    "num_train_timesteps": 1000,
}
_FLOW3 = {"_class_name": "FlowMatchEulerDiscreteScheduler", "num_train_timesteps": 1000, "shift": 3.0}


def _hub(name: str, hub: str, layout: dict[str, Any], description: str, best: str = "") -> None:
    register_preset(Preset(name, "diffusers", layout, f"the repository {hub}", description, hub=hub, best=best))


_SDXL_UNET: dict[str, Any] = {
    "_class_name": "UNet2DConditionModel", "act_fn": "silu", "addition_embed_type": "text_time", "addition_embed_type_num_heads": 64,
    "addition_time_embed_dim": 256, "attention_head_dim": [5, 10, 20], "block_out_channels": [320, 640, 1280],
    "center_input_sample": False, "cross_attention_dim": 2048, "downsample_padding": 1, "flip_sin_to_cos": True, "freq_shift": 0,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"], "in_channels": 4, "out_channels": 4,
    "layers_per_block": 2, "mid_block_scale_factor": 1, "norm_eps": 1e-05, "norm_num_groups": 32,
    "projection_class_embeddings_input_dim": 2816, "sample_size": 128, "transformer_layers_per_block": [1, 2, 10],
    "use_linear_projection": True,
}  # fmt: skip
_hub("sdxl-base-1.0", "stabilityai/stable-diffusion-xl-base-1.0",
     {"model": _SDXL_UNET, "scheduler": _LDM, "vae": _SDXL_VAE, "condition": {"null": "zeros", "max_tokens": 77}},
     "SDXL base 1.0, 1024×1024 (latent, DDPM; CLIP-L + CLIP-G; null condition zeros, as its pipeline feeds the empty prompt)")  # fmt: skip


def _sd3(layers: int, heads: int, pos: int, **extra: Any) -> dict[str, Any]:
    return {"_class_name": "SD3Transformer2DModel", "attention_head_dim": 64, "caption_projection_dim": 64 * heads, "in_channels": 16,
            "joint_attention_dim": 4096, "num_attention_heads": heads, "num_layers": layers, "out_channels": 16, "patch_size": 2,
            "pooled_projection_dim": 2048, "pos_embed_max_size": pos, "sample_size": 128, **extra}  # fmt: skip


_SD3_TEXT = {"null": "empty", "max_tokens": 256}
_hub("sd3-medium", "stabilityai/stable-diffusion-3-medium-diffusers",
     {"model": _sd3(24, 24, 192), "scheduler": _FLOW3, "vae": _SD3_VAE, "condition": _SD3_TEXT},
     "Stable Diffusion 3 medium, 1024×1024 (MM-DiT, rectified flow, shift 3; CLIP-L + CLIP-G + T5 on the empty prompt)")  # fmt: skip
_hub("sd3.5-medium", "stabilityai/stable-diffusion-3.5-medium",
     {"model": _sd3(24, 24, 384, qk_norm="rms_norm", dual_attention_layers=list(range(13))), "scheduler": _FLOW3, "vae": _SD3_VAE,
      "condition": _SD3_TEXT},
     "Stable Diffusion 3.5 medium, 1024×1024 (MMDiT-X, rectified flow, shift 3; CLIP-L + CLIP-G + T5 on the empty prompt)")  # fmt: skip
_hub("sd3.5-large", "stabilityai/stable-diffusion-3.5-large",
     {"model": _sd3(38, 38, 192, qk_norm="rms_norm"), "scheduler": _FLOW3, "vae": _SD3_VAE, "condition": _SD3_TEXT},
     "Stable Diffusion 3.5 large, 1024×1024 (MM-DiT, rectified flow, shift 3; CLIP-L + CLIP-G + T5 on the empty prompt)")  # fmt: skip


def _flux(guidance: bool) -> dict[str, Any]:
    return {"_class_name": "FluxTransformer2DModel", "attention_head_dim": 128, "axes_dims_rope": [16, 56, 56], "guidance_embeds": guidance,
            "in_channels": 64, "joint_attention_dim": 4096, "num_attention_heads": 24, "num_layers": 19, "num_single_layers": 38,
            "patch_size": 1, "pooled_projection_dim": 768}  # fmt: skip


_hub("flux.1-dev", "black-forest-labs/FLUX.1-dev",
     {"model": _flux(True), "vae": _FLUX_VAE, "condition": {"null": "empty", "max_tokens": 512, "guidance": 3.5},
      "scheduler": {"_class_name": "FlowMatchEulerDiscreteScheduler", "base_image_seq_len": 256, "base_shift": 0.5,
                    "max_image_seq_len": 4096, "max_shift": 1.15, "num_train_timesteps": 1000, "shift": 3.0, "use_dynamic_shifting": True}},
     "FLUX.1-dev, 1024×1024 (19 joint + 38 single blocks, rectified flow with its resolution's shift, guidance 3.5; CLIP-L + T5 "
     "on the empty prompt)")  # fmt: skip
_hub("flux.1-schnell", "black-forest-labs/FLUX.1-schnell",
     {"model": _flux(False), "vae": _FLUX_VAE, "condition": {"null": "empty", "max_tokens": 256},
      "scheduler": {"_class_name": "FlowMatchEulerDiscreteScheduler", "num_train_timesteps": 1000, "shift": 1.0, "use_dynamic_shifting": False}},
     "FLUX.1-schnell, 1024×1024 (timestep-distilled, rectified flow without shift; CLIP-L + T5 on the empty prompt)")  # fmt: skip

_DC_BLOCKS = ["ResBlock"] * 3 + ["EfficientViTBlock"] * 3
_DC_AE: dict[str, Any] = {
    "_class_name": "AutoencoderDC", "attention_head_dim": 32, "in_channels": 3, "latent_channels": 32, "scaling_factor": 0.41407,
    "encoder_block_types": _DC_BLOCKS, "decoder_block_types": _DC_BLOCKS, "encoder_block_out_channels": [128, 256, 512, 512, 1024, 1024],
    "decoder_block_out_channels": [128, 256, 512, 512, 1024, 1024], "encoder_layers_per_block": [2, 2, 2, 3, 3, 3],
    "decoder_layers_per_block": [3, 3, 3, 3, 3, 3], "encoder_qkv_multiscales": [[], [], [], [5], [5], [5]],
    "decoder_qkv_multiscales": [[], [], [], [5], [5], [5]], "downsample_block_type": "Conv", "upsample_block_type": "interpolate",
    "decoder_norm_types": "rms_norm", "decoder_act_fns": "silu",
}  # fmt: skip
_hub("sana-1600m-1024", "Efficient-Large-Model/Sana_1600M_1024px_diffusers",
     {"model": {"_class_name": "SanaTransformer2DModel", "attention_bias": False, "attention_head_dim": 32, "caption_channels": 2304,
                "cross_attention_dim": 2240, "cross_attention_head_dim": 112, "in_channels": 32, "mlp_ratio": 2.5,
                "norm_elementwise_affine": False, "norm_eps": 1e-06, "num_attention_heads": 70, "num_cross_attention_heads": 20,
                "num_layers": 20, "out_channels": 32, "patch_size": 1, "sample_size": 32},
      "scheduler": {"_class_name": "DPMSolverMultistepScheduler", "flow_shift": 3.0, "use_flow_sigmas": True,
                    "prediction_type": "flow_prediction", "num_train_timesteps": 1000},
      "vae": _DC_AE, "condition": {"null": "empty", "max_tokens": 300}},
     "SANA 1.6B, 1024×1024 (linear DiT over a 32× DC-AE, rectified flow, shift 3; Gemma-2 on the empty prompt)")  # fmt: skip


def _pixart(cls: str, **extra: Any) -> dict[str, Any]:
    return {"_class_name": cls, "activation_fn": "gelu-approximate", "attention_bias": True, "attention_head_dim": 72,
            "caption_channels": 4096, "cross_attention_dim": 1152, "in_channels": 4, "norm_elementwise_affine": False, "norm_eps": 1e-06,
            "norm_type": "ada_norm_single", "num_attention_heads": 16, "num_embeds_ada_norm": 1000, "num_layers": 28, "out_channels": 8,
            "patch_size": 2, "sample_size": 128, "upcast_attention": False, **extra}  # fmt: skip


_hub("pixart-alpha-1024", "PixArt-alpha/PixArt-XL-2-1024-MS",
     {"model": _pixart("Transformer2DModel"), "scheduler": _DDPM, "vae": _SD_VAE, "condition": {"null": "empty", "max_tokens": 120}},
     "PixArt-α XL/2, 1024×1024 (DiT with T5 cross-attention, DDPM; T5 on the empty prompt, 120 tokens)")  # fmt: skip
_hub("pixart-sigma-1024", "PixArt-alpha/PixArt-Sigma-XL-2-1024-MS",
     {"model": _pixart("PixArtTransformer2DModel", use_additional_conditions=False), "scheduler": _DDPM, "vae": _SDXL_VAE,
      "condition": {"null": "empty", "max_tokens": 300}},
     "PixArt-Σ XL/2, 1024×1024 (DiT with T5 cross-attention, DDPM, SDXL's VAE; T5 on the empty prompt, 300 tokens)")  # fmt: skip
