"""A pipeline's text encoders, each loaded for one prompt and dropped at once (CLIP, T5, Gemma-2).

The functions give what the pipelines feed their denoisers: CLIP's penultimate hidden states and its
pooled (projected, where the encoder has a projection) embedding; T5's and Gemma's last hidden states,
with the tokens' mask. Every prompt is padded to a fixed length, as the pipelines pad it.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import Tensor

from diffprobe.errors import CheckpointError, ConfigError
from diffprobe.extract.diffusers.layout import ModelDir, read_json, uses_safetensors
from diffprobe.registry import Registry

log = logging.getLogger(__name__)

#: The transformers classes a text encoder folder may hold (its config.json's "architectures").
TEXT_ENCODERS: Registry[str] = Registry("text encoder class", error=CheckpointError)
for _name in ("CLIPTextModel", "CLIPTextModelWithProjection", "T5EncoderModel", "Gemma2Model", "GemmaModel"):
    TEXT_ENCODERS.register(_name, _name)


def import_transformers() -> ModuleType:
    """``transformers``, quiet, or an error that says how to install it."""
    try:
        import transformers
    except ImportError as e:
        raise ConfigError(f"embedding the prompt needs transformers ({e}); install it: pip install 'diffprobe[diffusers]'") from None
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    return transformers


def _folders(model_dir: ModelDir, part: str) -> tuple[Path, Path]:
    """(text encoder folder, its tokenizer folder): ``text_encoder_2`` goes with ``tokenizer_2``."""
    enc, tok = model_dir.part(part), model_dir.part(part.replace("text_encoder", "tokenizer"))
    if enc is None or tok is None:
        raise CheckpointError(f"{model_dir.root} has no {part}/ and {part.replace('text_encoder', 'tokenizer')}/ to embed "
                              "the prompt with; use the complete pipeline folder (`hf download REPO`)")  # fmt: skip
    return enc, tok


@contextmanager
def text_encoder(model_dir: ModelDir, part: str, device: torch.device, dtype: torch.dtype) -> Iterator[tuple[Any, Any]]:
    """(tokenizer, encoder) of ``part`` on ``device``; the encoder is freed on exit."""
    transformers = import_transformers()
    enc_dir, tok_dir = _folders(model_dir, part)
    arch = (read_json(enc_dir / "config.json").get("architectures") or ["?"])[0]
    cls = getattr(transformers, TEXT_ENCODERS.get(arch))
    tok = transformers.AutoTokenizer.from_pretrained(tok_dir, local_files_only=True)
    tok.padding_side = "right"
    enc = cls.from_pretrained(enc_dir, local_files_only=True, use_safetensors=uses_safetensors(enc_dir))
    enc = enc.to(device=device, dtype=dtype).eval()  # cast here: transformers' dtype argument changed name across versions
    try:
        yield tok, enc
    finally:
        del enc
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
        log.info("embedded the prompt with %s (%s), then freed it", enc_dir.name, arch)


def _ids(tok: Any, text: str, length: int, device: torch.device) -> tuple[Tensor, Tensor]:
    batch = tok(text, padding="max_length", max_length=length, truncation=True, add_special_tokens=True, return_tensors="pt")
    return batch.input_ids.to(device), batch.attention_mask.to(device)


def clip_states(model_dir: ModelDir, part: str, text: str, device: torch.device, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """CLIP on ``text`` padded to the tokenizer's length: ((1, L, D) penultimate hidden states,
    (1, P) pooled embedding — the projected one of a ``CLIPTextModelWithProjection``)."""
    with text_encoder(model_dir, part, device, dtype) as (tok, enc), torch.inference_mode():
        ids, _ = _ids(tok, text, tok.model_max_length, device)
        out = enc(ids, output_hidden_states=True)
        pooled = out.text_embeds if getattr(out, "text_embeds", None) is not None else out.pooler_output
        return out.hidden_states[-2].float().clone(), pooled.float().clone()


def sequence_states(model_dir: ModelDir, part: str, text: str, length: int, masked: bool, device: torch.device,
                    dtype: torch.dtype) -> tuple[Tensor, Tensor]:  # fmt: skip
    """T5 or Gemma on ``text`` padded to ``length`` tokens: ((1, L, D) last hidden states, (1, L)
    mask of the real tokens). ``masked``: the encoder attends to the real tokens only (PixArt, SANA);
    else to the padding too (SD3, Flux)."""
    with text_encoder(model_dir, part, device, dtype) as (tok, enc), torch.inference_mode():
        ids, mask = _ids(tok, text, length, device)
        out = enc(ids, attention_mask=mask if masked else None)[0]
        return out.float().clone(), mask.clone()


def tokenizer_length(model_dir: ModelDir | None, part: str, default: int) -> int:
    """The padded length of tokenizer ``part`` (its ``model_max_length``), or ``default``."""
    folder = model_dir.part(part) if model_dir is not None else None
    cfg = folder / "tokenizer_config.json" if folder is not None else None
    if cfg is None or not cfg.is_file():
        return default
    length = read_json(cfg).get("model_max_length", default)
    return int(length) if isinstance(length, int) and length < 100_000 else default
