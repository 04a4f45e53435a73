"""SDXL (``UNet2DConditionModel`` with added text-time embeddings): blocks numbered as for SD's U-Net.

Its inputs beyond the latents and the timestep: the two CLIPs' token states (1, 77, 2048), CLIP-G's
pooled embedding (1, 1280) and the micro-conditioning time ids (original size, crop top-left,
target size) = (S, S, 0, 0, S, S) for images of side S — an uncropped image at its own size. The
empty prompt's condition is zeros, as SDXL's pipelines feed it (``force_zeros_for_empty_prompt``,
the text dropped to zeros in training) unless the pipeline folder's ``model_index.json`` says otherwise.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from diffprobe.extract.diffusers.conditioned import TextRunner
from diffprobe.extract.diffusers.conditions import Condition, ConditionShape
from diffprobe.extract.diffusers.encoders import tokenizer_length
from diffprobe.extract.diffusers.layout import ModelDir
from diffprobe.extract.diffusers.runner import Unit
from diffprobe.extract.diffusers.unet import unet_units


class SDXLRunner(TextRunner):
    kind = "sdxl"
    process = "ddpm"
    text_parts = ("text_encoder", "text_encoder_2")

    def units(self, net: Any) -> list[Unit]:
        return unet_units(net)

    def text_defaults(self, model: dict[str, Any], model_dir: ModelDir | None) -> dict[str, Any]:
        zeros = model_dir is None or bool(model_dir.pipeline_config().get("force_zeros_for_empty_prompt", True))
        return {"null": "zeros" if zeros else "empty", "max_tokens": tokenizer_length(model_dir, "tokenizer", 77)}

    def condition_shape(self, cfg: Any) -> ConditionShape:
        m = cfg.model_dict()
        pooled = int(m["projection_class_embeddings_input_dim"]) - 6 * int(m["addition_time_embed_dim"])
        return ConditionShape(int(cfg.text_dict()["max_tokens"]), int(m["cross_attention_dim"]), pooled)

    def inputs(self, net: Any, x_t: Tensor, timestep: Tensor, cond: Condition, cfg: Any) -> dict[str, Any]:
        n, s = x_t.shape[0], float(cfg.image_size)
        time_ids = torch.tensor([[s, s, 0.0, 0.0, s, s]], dtype=cond.states.dtype, device=x_t.device).expand(n, -1)
        added = {"text_embeds": cond.pooled.expand(n, -1), "time_ids": time_ids}  # type: ignore[union-attr]
        return {"sample": x_t, "timestep": timestep, "encoder_hidden_states": cond.states.expand(n, -1, -1),
                "added_cond_kwargs": added, "return_dict": False}  # fmt: skip


SDXL = SDXLRunner()
