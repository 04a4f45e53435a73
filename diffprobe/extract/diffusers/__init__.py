"""The diffusers family: models in Hugging Face diffusers' format, loaded from a local directory.

Three kinds, told apart by the denoiser's class (see :mod:`.describe`):

- ``UNet2DModel`` — pixel-space DDPMs (``google/ddpm-*``);
- ``UNet2DConditionModel`` + ``AutoencoderKL`` — Stable Diffusion 1.x/2.x (latent, text-conditioned,
  the empty prompt by default);
- ``DiTTransformer2DModel`` + ``AutoencoderKL`` — DiT (latent, class-conditioned, the null class by
  default).

``diffusers`` (and ``transformers`` for Stable Diffusion's text encoder) are optional: install
``diffprobe[diffusers]``. Nothing here imports them until a model is described or loaded.
"""
