"""A diffusers model's architecture and noising as one hashable value: :class:`DiffusersConfig`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import torch

from diffprobe.extract.diffusers.schedules import make_process
from diffprobe.extract.noise import ForwardProcess
from diffprobe.registry import Registry

#: ``weights=`` flag values → the dtype the weights are loaded in
WEIGHT_DTYPES: Registry[torch.dtype] = Registry("weights dtype")
for _name, _dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16), ("float16", torch.float16)):
    WEIGHT_DTYPES.register(_name, _dtype)

@dataclass(frozen=True)
class DiffusersConfig:
    """What defines a diffusers model's architecture and noising, as JSON strings (hashable).

    Attributes:
        kind: "unet" (pixel DDPM), "sd" (latent, text-conditioned), "dit" (latent, class-conditioned),
            or one of the text-conditioned latent kinds "sdxl", "sd3", "flux", "sana", "pixart".
        model_class: the denoiser's diffusers class.
        model, scheduler, vae: configurations (keys starting with "_" dropped); ``scheduler`` holds
            the noise-defining fields only (:func:`~.schedules.process_fields`).
        image_size: the pixel side images are resized to.
        text_len, text_dim: the prompt embedding's shape (L, D) for "sd".
        autoencoder: the diffusers class of ``vae`` (``AutoencoderKL``, or SANA's ``AutoencoderDC``).
        text: the text conditioning's settings, JSON (null, max_tokens, guidance), for the new kinds.
        weights: the dtype the weights load in ("float32" unless the ``weights=`` flag asks).
    """

    kind: str
    model_class: str
    model: str
    scheduler: str
    vae: str | None
    image_size: int
    text_len: int = 77
    text_dim: int = 0
    autoencoder: str = "AutoencoderKL"
    text: str | None = None
    weights: str = "float32"

    def model_dict(self) -> dict[str, Any]:
        return dict(json.loads(self.model))

    def vae_dict(self) -> dict[str, Any]:
        return dict(json.loads(self.vae)) if self.vae else {}

    def scheduler_dict(self) -> dict[str, Any]:
        return dict(json.loads(self.scheduler))

    def text_dict(self) -> dict[str, Any]:
        return dict(json.loads(self.text)) if self.text else {}

    @property
    def flow(self) -> bool:
        return self.scheduler_dict().get("process") == "rectified-flow"

    @property
    def dtype(self) -> torch.dtype:
        return WEIGHT_DTYPES.get(self.weights)

    @property
    def image_tokens(self) -> int:
        """Image tokens of a transformer's forward (2×2 latent patches: Flux's dynamic σ shift)."""
        _, h, w = self.noise_shape
        return (h // 2) * (w // 2)

    def process(self) -> ForwardProcess:
        """The forward process: the scheduler's DDPM β schedule, or rectified flow with its shift."""
        return make_process(self.scheduler_dict(), self.image_tokens)

    @property
    def latent(self) -> bool:
        return self.vae is not None

    @property
    def vae_factor(self) -> int:
        """Pixels per latent along each side (2 per VAE down-block after the first)."""
        return vae_factor(self.vae_dict()) if self.vae else 1

    @property
    def noise_shape(self) -> tuple[int, int, int]:
        side = self.image_size // self.vae_factor
        channels = self.vae_dict()["latent_channels"] if self.vae else self.model_dict().get("in_channels", 3)
        return int(channels), side, side



def vae_factor(vae: dict[str, Any]) -> int:
    """Pixels per latent along each side: 2 per down-block after the first (``AutoencoderKL``'s
    ``block_out_channels``, ``AutoencoderDC``'s ``encoder_block_out_channels``)."""
    blocks = vae.get("encoder_block_out_channels") or vae.get("block_out_channels") or (0,) * 6
    return int(2 ** (len(blocks) - 1))
