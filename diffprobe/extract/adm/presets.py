"""The ADM presets: flags as given for each released checkpoint in the guided-diffusion README
(``MODEL_FLAGS`` + ``DIFFUSION_FLAGS``); ``adm-32-fmnist`` is the small Fashion-MNIST model bundled
with diffprobe (see ``diffprobe/assets/README.md``)."""

from __future__ import annotations

from dataclasses import replace

from diffprobe.extract.adm.config import ADMConfig
from diffprobe.extract.presets import Preset, register_preset

#: Where guided-diffusion's released checkpoints are published (its README's download links).
GUIDED_DIFFUSION_RELEASE = "https://openaipublic.blob.core.windows.net/diffusion/jul-2021/"

_ADM_256 = ADMConfig(
    image_size=256,
    num_channels=256,
    num_res_blocks=2,
    attention_resolutions=(32, 16, 8),
    num_head_channels=64,
    learn_sigma=True,
    resblock_updown=True,
    use_scale_shift_norm=True,
    use_fp16=True,
    noise_schedule="linear",
    diffusion_steps=1000,
)

register_preset(
    Preset("adm-256-uncond", "adm", _ADM_256, "256x256_diffusion_uncond.pt", "ImageNet 256×256 unconditional (the paper's)",
           url=GUIDED_DIFFUSION_RELEASE + "256x256_diffusion_uncond.pt")
)
register_preset(
    Preset(
        "adm-256-cond",
        "adm",
        replace(_ADM_256, class_cond=True),
        "256x256_diffusion.pt",
        "ImageNet 256×256 class-conditional",
        url=GUIDED_DIFFUSION_RELEASE + "256x256_diffusion.pt",
    )
)
register_preset(
    Preset(
        "adm-128-cond",
        "adm",
        replace(_ADM_256, image_size=128, num_head_channels=None, num_heads=4, class_cond=True),
        "128x128_diffusion.pt",
        "ImageNet 128×128 class-conditional",
        url=GUIDED_DIFFUSION_RELEASE + "128x128_diffusion.pt",
    )
)
register_preset(
    Preset(
        "adm-64-cond",
        "adm",
        replace(
            _ADM_256,
            image_size=64,
            num_channels=192,
            num_res_blocks=3,
            noise_schedule="cosine",
            dropout=0.1,
            use_new_attention_order=True,
            class_cond=True,
        ),
        "64x64_diffusion.pt",
        "ImageNet 64×64 class-conditional (cosine schedule, new attention order)",
        url=GUIDED_DIFFUSION_RELEASE + "64x64_diffusion.pt",
    )
)
register_preset(
    Preset(
        "adm-512-cond",
        "adm",
        replace(_ADM_256, image_size=512, class_cond=True, use_fp16=False),
        "512x512_diffusion.pt",
        "ImageNet 512×512 class-conditional",
        url=GUIDED_DIFFUSION_RELEASE + "512x512_diffusion.pt",
    )
)
register_preset(
    Preset(
        "adm-256-lsun",
        "adm",
        replace(_ADM_256, dropout=0.1),
        "lsun_bedroom.pt / lsun_cat.pt / lsun_horse.pt",
        "LSUN bedroom, cat or horse 256×256 unconditional (one architecture)",
        url=GUIDED_DIFFUSION_RELEASE + "lsun_bedroom.pt (or lsun_cat.pt, lsun_horse.pt)",
    )
)
register_preset(
    Preset(
        "adm-32-fmnist",
        "adm",
        ADMConfig(
            image_size=32,
            num_channels=64,
            num_res_blocks=2,
            channel_mult=(1, 2, 2),
            attention_resolutions=(16, 8),
            num_head_channels=32,
            learn_sigma=False,
            resblock_updown=True,
            use_scale_shift_norm=True,
            dropout=0.1,
        ),
        "adm32_fmnist_ema.pt (bundled)",
        "Fashion-MNIST 32×32 DDPM bundled with diffprobe",
        bundled="adm32_fmnist_ema.pt",
    )
)
register_preset(
    Preset(
        "adm-8-scale",
        "adm",
        ADMConfig(image_size=8, num_channels=32, num_res_blocks=1, channel_mult=(1, 2), attention_resolutions=(), learn_sigma=False),
        "none: random weights only (--random-weights)",
        "a tiny 8×8 ADM for rehearsing scale (`synthetic:` data, benchmarks/scale.py): the network costs next to nothing",
    )
)
