"""What a model is before any weight is loaded: :class:`ModelSpec`, and what every image is
conditioned on: :class:`Conditioning` (shared by the families and the backbones)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from diffprobe.blocks import BlockInfo


@dataclass(frozen=True)
class Conditioning:
    """What every image is conditioned on: the same for all of them, never its true label.

    Attributes:
        class_label: one class for a class-conditional model (ADM, DiT: None = DiT's null class).
        prompt: the text of a text-conditioned model (None or "" = the empty prompt, unconditional).
        prompt_embedding: a file (.pt or .npy, (L, D) or (1, L, D)) holding the prompt's embedding,
            for models whose directory has no text encoder.
    """

    class_label: int | None = None
    prompt: str | None = None
    prompt_embedding: str | None = None

    @property
    def text(self) -> str:
        return self.prompt or ""


@dataclass(frozen=True)
class ModelSpec:
    """A model as far as it is known without its weights.

    Attributes:
        name: the model name as given (a preset or a family name).
        family: the family that builds it.
        config: the family's own configuration object (``ADMConfig`` for ADM).
        image_size: the side of the square images fed to it (after the input transform's resize).
        steps: diffusion steps T (t in [0, T)); 1 for an image model without noise.
        noise_shape: (C, H, W) of the space noise is added in (the pixels, or a VAE's latents).
        blocks: every block, in forward order, measured on the meta device.
        identity: the family's fields of a store's identity (what determines the values).
        compilable: whether ``torch.compile`` of the forward is supported.
    """

    name: str
    family: str
    config: Any
    image_size: int
    steps: int
    noise_shape: tuple[int, int, int]
    blocks: tuple[BlockInfo, ...]
    identity: Mapping[str, Any] = field(default_factory=dict, compare=False)
    compilable: bool = False

    @property
    def noised(self) -> bool:
        """Whether images are noised at a timestep (diffusion models); image models (timm) have one
        step, stored as t = 0, and see the clean image."""
        return self.steps > 1
