"""Text-free conditioning, done once: the null condition of a text-conditioned model.

Each recipe embeds one prompt (the empty one unless ``--prompt``) with the model's own text encoders,
as its pipeline embeds a prompt, loading one encoder at a time and freeing it before the next; the
result, a :class:`Condition` of batch one, is all that stays. Where a model was trained with its
text dropped to zeros, and its pipeline feeds zeros for the empty prompt (SDXL's
``force_zeros_for_empty_prompt``), the null condition is zeros (settings "null": "zeros").

| kind   | text encoders (pipeline folder)                 | states (1, L, D)                          | pooled (1, P)      | mask |
|--------|-------------------------------------------------|-------------------------------------------|--------------------|------|
| sdxl   | CLIP-L (text_encoder), CLIP-G (text_encoder_2)  | [CLIP-L ‖ CLIP-G] penultimate, L = 77     | CLIP-G projected   | no   |
| sd3    | CLIP-L, CLIP-G, T5 (text_encoder_3; else zeros) | [pad([CLIP-L ‖ CLIP-G]) ; T5], L = 77 + N | [CLIP-L ‖ CLIP-G]  | no   |
| flux   | CLIP-L (text_encoder), T5 (text_encoder_2)      | T5, L = N (512)                           | CLIP-L pooled      | no   |
| sana   | Gemma-2 (text_encoder)                          | Gemma-2 last hidden states, L = N (300)   | —                  | yes  |
| pixart | T5 (text_encoder)                               | T5, L = N (α 120, Σ 300)                  | —                  | yes  |
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from diffprobe.extract.diffusers.encoders import clip_states, sequence_states
from diffprobe.extract.diffusers.layout import ModelDir
from diffprobe.registry import Registry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Condition:
    """A text condition of batch one.

    Attributes:
        states: (1, L, D) the token states the denoiser attends to.
        pooled: (1, P) the pooled embedding (SDXL, SD3, Flux), else None.
        mask: (1, L) 1 for real tokens, 0 for padding (SANA, PixArt), else None.
    """

    states: Tensor
    pooled: Tensor | None = None
    mask: Tensor | None = None

    def to(self, device: torch.device) -> Condition:
        move = lambda x: None if x is None else x.to(device)  # noqa: E731
        return Condition(move(self.states), move(self.pooled), move(self.mask))  # type: ignore[arg-type]


@dataclass(frozen=True)
class ConditionShape:
    """The shapes of a kind's condition: (1, length, dim) states, (1, pooled) or none, a mask or not."""

    length: int
    dim: int
    pooled: int | None = None
    masked: bool = False

    def empty(self) -> Condition:
        """Uninitialised tensors on the current device (the meta device, to measure blocks)."""
        return Condition(torch.empty(1, self.length, self.dim), torch.empty(1, self.pooled) if self.pooled else None,
                         torch.ones(1, self.length, dtype=torch.long) if self.masked else None)  # fmt: skip

    def zeros(self, device: torch.device) -> Condition:
        """The zero condition (every token real, where there is a mask)."""
        return Condition(torch.zeros(1, self.length, self.dim, device=device),
                         torch.zeros(1, self.pooled, device=device) if self.pooled else None,
                         torch.ones(1, self.length, dtype=torch.long, device=device) if self.masked else None)  # fmt: skip


#: kind → (model directory, prompt, settings, model config, device, dtype) → its condition
Recipe = Callable[[ModelDir, str, dict[str, Any], dict[str, Any], torch.device, torch.dtype], Condition]
RECIPES: Registry[Recipe] = Registry("text conditioning recipe")


@RECIPES.register("sdxl")
def sdxl(d: ModelDir, text: str, settings: dict[str, Any], model: dict[str, Any], device: torch.device, dtype: torch.dtype) -> Condition:
    """SDXL: both CLIPs' penultimate states side by side; CLIP-G's projected embedding pooled."""
    l_states, _ = clip_states(d, "text_encoder", text, device, dtype)
    g_states, g_pooled = clip_states(d, "text_encoder_2", text, device, dtype)
    return Condition(torch.cat([l_states, g_states], dim=-1), g_pooled)


@RECIPES.register("sd3")
def sd3(d: ModelDir, text: str, settings: dict[str, Any], model: dict[str, Any], device: torch.device, dtype: torch.dtype) -> Condition:
    """SD3: [CLIP-L ‖ CLIP-G] zero-padded to T5's width, then T5's tokens (zeros without a T5)."""
    l_states, l_pooled = clip_states(d, "text_encoder", text, device, dtype)
    g_states, g_pooled = clip_states(d, "text_encoder_2", text, device, dtype)
    n = int(settings["max_tokens"])
    if d.part("text_encoder_3") is not None:
        t5, _ = sequence_states(d, "text_encoder_3", text, n, False, device, dtype)
    else:  # SD3 runs without its T5 (as its pipeline does when text_encoder_3 is None): zeros in its place
        log.info("%s has no text_encoder_3 (T5): its %d tokens are zeros", d.root, n)
        t5 = torch.zeros(1, n, int(model["joint_attention_dim"]), device=device)
    clip = torch.cat([l_states, g_states], dim=-1)
    clip = F.pad(clip, (0, t5.shape[-1] - clip.shape[-1]))
    return Condition(torch.cat([clip, t5], dim=-2), torch.cat([l_pooled, g_pooled], dim=-1))


@RECIPES.register("flux")
def flux(d: ModelDir, text: str, settings: dict[str, Any], model: dict[str, Any], device: torch.device, dtype: torch.dtype) -> Condition:
    """Flux.1: T5's tokens; CLIP-L's pooled output."""
    _, pooled = clip_states(d, "text_encoder", text, device, dtype)
    states, _ = sequence_states(d, "text_encoder_2", text, int(settings["max_tokens"]), False, device, dtype)
    return Condition(states, pooled)


@RECIPES.register("sana")
def sana(d: ModelDir, text: str, settings: dict[str, Any], model: dict[str, Any], device: torch.device, dtype: torch.dtype) -> Condition:
    """SANA: Gemma-2's states of the lower-cased prompt and their mask (no instruction prefix: the
    pipeline embeds its unconditional prompt so)."""
    states, mask = sequence_states(d, "text_encoder", text.lower().strip(), int(settings["max_tokens"]), True, device, dtype)
    return Condition(states, mask=mask)


@RECIPES.register("pixart")
def pixart(d: ModelDir, text: str, settings: dict[str, Any], model: dict[str, Any], device: torch.device, dtype: torch.dtype) -> Condition:
    """PixArt-α/Σ: T5's states of the lower-cased prompt and their mask."""
    states, mask = sequence_states(d, "text_encoder", text.lower().strip(), int(settings["max_tokens"]), True, device, dtype)
    return Condition(states, mask=mask)


def null_condition(kind: str, model_dir: ModelDir | None, text: str, settings: dict[str, Any], model: dict[str, Any],
                   shape: ConditionShape, device: torch.device, dtype: torch.dtype) -> Condition:  # fmt: skip
    """The condition of every image: ``text`` ("" = the null condition) through the kind's recipe;
    zeros for the empty prompt of a model whose settings say "zeros", and for random weights."""
    if model_dir is None:
        log.warning("random weights: the text condition is zeros (no text encoders to embed the prompt with)")
        return shape.zeros(device)
    if not text and settings["null"] == "zeros":
        return shape.zeros(device)
    return RECIPES.get(kind)(model_dir, text, settings, model, device, dtype)
