"""The diffusers family: models in Hugging Face diffusers' format, loaded from a local directory.

Kinds, told apart by the denoiser's class (:data:`.describe.KINDS`), each run by a
:class:`~.runner.Runner` (:data:`.runner.RUNNERS`):

- ``UNet2DModel`` — pixel-space DDPMs (``google/ddpm-*``);
- ``UNet2DConditionModel`` + ``AutoencoderKL`` — Stable Diffusion 1.x/2.x (latent, text-conditioned,
  the empty prompt by default), and SDXL (with added text-time embeddings; zeros for the empty prompt);
- ``DiTTransformer2DModel`` + ``AutoencoderKL`` — DiT (latent, class-conditioned, the null class by
  default);
- ``SD3Transformer2DModel`` and ``FluxTransformer2DModel`` + a 16-channel ``AutoencoderKL`` — SD3/3.5
  and Flux.1 (MM-DiT, rectified flow; :mod:`.mmdit`);
- ``SanaTransformer2DModel`` + ``AutoencoderDC`` — SANA (rectified flow), and
  ``PixArtTransformer2DModel`` + ``AutoencoderKL`` — PixArt-α/Σ (DDPM; :mod:`.tokens`).

The forward process comes from the scheduler configuration (:mod:`.schedules`); the text condition
of the text-conditioned kinds is computed once per run with the model's own text encoders
(:mod:`.conditions`). ``diffusers`` and ``transformers`` are optional: install
``diffprobe[diffusers]``. Nothing here imports them until a model is described or loaded.
"""
