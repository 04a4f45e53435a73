"""The prompt embedding of a text-conditioned U-Net: computed once from the model directory's own
tokenizer and text encoder (as Stable Diffusion pipelines embed a prompt), or read from a file."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from diffprobe.errors import CheckpointError, ConfigError
from diffprobe.extract.diffusers.layout import ModelDir, uses_safetensors

log = logging.getLogger(__name__)


def read_embedding(path: str | Path, length: int, dim: int) -> Tensor:
    """(1, L, D) float32 from a ``.pt`` tensor or ``.npy`` array of shape (L, D) or (1, L, D).

    Raises:
        ConfigError: the file is missing, unreadable, or of another shape (the message says which).
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise ConfigError(f"prompt embedding not found: {p}; check the path")
    try:
        x = torch.from_numpy(np.load(p)) if p.suffix == ".npy" else torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # numpy and torch raise many types for a file that is not theirs
        raise ConfigError(f"cannot read {p} as a tensor (.pt) or array (.npy): {e}") from None
    if not isinstance(x, Tensor):
        raise ConfigError(f"{p} holds a {type(x).__name__}, not one tensor of shape ({length}, {dim})")
    x = x.float().reshape(-1, *x.shape[-2:]) if x.dim() >= 2 else x
    if x.dim() != 3 or x.shape[0] != 1 or x.shape[2] != dim:
        raise ConfigError(f"{p} has shape {tuple(x.shape)}; expected ({length}, {dim}) or (1, {length}, {dim}): "
                          f"this U-Net's cross-attention takes {dim}-dim tokens")  # fmt: skip
    return x


def embed_prompt(model_dir: ModelDir, prompt: str, device: torch.device) -> Tensor:
    """(1, L, D) float32: ``prompt`` ("" = unconditional) through the directory's tokenizer and text
    encoder, padded to the tokenizer's maximum length, as the pipelines embed a (negative) prompt.

    Raises:
        CheckpointError: no text encoder or tokenizer in the directory.  ConfigError: transformers
            is not installed.
    """
    if model_dir.text_encoder is None or model_dir.tokenizer is None:
        raise CheckpointError(
            f"{model_dir.root} has no text_encoder/ and tokenizer/ to embed the prompt with; pass "
            "--prompt-embedding FILE with the prompt's (L, D) embedding instead"
        )
    try:
        import transformers
    except ImportError as e:
        raise ConfigError(f"embedding the prompt needs transformers ({e}); install it: pip install 'diffprobe[diffusers]'") from None
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    tok = transformers.AutoTokenizer.from_pretrained(model_dir.tokenizer, local_files_only=True)
    enc: Any = transformers.CLIPTextModel.from_pretrained(model_dir.text_encoder, local_files_only=True, torch_dtype=torch.float32,
                                                          use_safetensors=uses_safetensors(model_dir.text_encoder))
    enc = enc.to(device).eval()
    ids = tok(prompt, padding="max_length", max_length=tok.model_max_length, truncation=True, return_tensors="pt")
    mask = ids.attention_mask.to(device) if getattr(enc.config, "use_attention_mask", False) else None
    with torch.inference_mode():
        out = enc(ids.input_ids.to(device), attention_mask=mask)[0]
    log.info("embedded the prompt %r with %s: (%d, %d)", prompt, model_dir.text_encoder, out.shape[1], out.shape[2])
    return out.float().clone()


def sd_context(cfg: Any, model_dir: ModelDir | None, cond: Any, device: torch.device) -> Tensor:
    """(1, L, D) the prompt embedding of a Stable Diffusion 1.x/2.x U-Net: from ``--prompt-embedding``,
    else the directory's text encoder on the prompt, else (random weights) zeros."""
    if cond.prompt_embedding:
        return read_embedding(cond.prompt_embedding, cfg.text_len, cfg.text_dim).to(device)
    if model_dir is None:  # random weights: no text encoder to embed with
        log.warning("random weights: the prompt embedding is zeros (pass --prompt-embedding FILE for another)")
        return torch.zeros(1, cfg.text_len, cfg.text_dim, device=device)
    return embed_prompt(model_dir, cond.text, device)
