"""Pixels → the latents a diffusers denoiser works on, with the autoencoder's own scaling and shift.

``AutoencoderKL`` (SD, SDXL, SD3, Flux, DiT, PixArt): the posterior's mean, deterministic;
``AutoencoderDC`` (SANA's deep-compression autoencoder): its encoder's output. Both then
``z ← (z − shift_factor) · scaling_factor`` with the factors of the autoencoder's configuration
(shift 0 where it has none). The computer encodes each (item, view) once and noises the latents
for every timestep and draw (:meth:`~diffprobe.extract.compute.FeatureComputer.launch`).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor


def encode_latents(vae: Any, x0: Tensor) -> Tensor:
    """(N, 3, S, S) images in [-1, 1] → (N, C, S/f, S/f) scaled latents (f: the autoencoder's factor)."""
    out = vae.encode(x0.to(vae.dtype))
    z = out.latent_dist.mean if hasattr(out, "latent_dist") else out.latent
    cfg = vae.config
    shift = getattr(cfg, "shift_factor", None) or 0.0
    return (z - shift) * cfg.scaling_factor


def encoder_only(vae: Any) -> Any:
    """``vae`` without its decoder (never used here): only the denoiser and the encoder stay in memory."""
    for name in ("decoder", "post_quant_conv"):
        if getattr(vae, name, None) is not None:
            setattr(vae, name, None)
    return vae
