"""The per-batch computation: noise, truncated forwards over fused (view, t, draw) passes, pooling on the device."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from diffprobe.device import autocast, device_name
from diffprobe.extract.backbone import Backbone, Timesteps
from diffprobe.extract.checkpoint import check_finite
from diffprobe.extract.compute_spec import ComputeSpec
from diffprobe.extract.config import ExtractConfig
from diffprobe.extract.noise import Pass, noise_like, q_sample
from diffprobe.store.layout import FeatureKey

log = logging.getLogger(__name__)


def group_by_t(keys: Sequence[FeatureKey]) -> dict[int, list[FeatureKey]]:
    out: dict[int, list[FeatureKey]] = {}
    for k in keys:
        out.setdefault(k.t, []).append(k)
    return out


class FeatureComputer:
    """Turns a batch of clean images into pooled features for a set of keys, on one device."""

    def __init__(self, backbone: Backbone, device: torch.device, spec: ComputeSpec) -> None:
        self.backbone = backbone
        self.device = device
        self.spec = spec
        self._features: Callable[..., dict[int, torch.Tensor]] = backbone.run_blocks
        self._compile_state: dict[str, bool | None] = {"ok": None}
        backbone.set_norm_kernel(spec.norm_kernel)
        # Both ways, as the backbone may have been laid out for another computer; a no-op when it is already.
        backbone.to(memory_format=torch.channels_last if spec.channels_last else torch.contiguous_format)  # type: ignore[call-overload]
        self._graphs = spec.cuda_graphs and device.type == "cuda"
        if spec.cuda_graphs and not self._graphs:
            log.warning("--cuda-graphs: CUDA graphs need a CUDA device; the forward on %s runs without them", device)
        if spec.compile and not backbone.spec.compilable:
            log.warning("--compile: torch.compile is used for ADM models only; %s (%s) runs eagerly", backbone.name, backbone.family)
            self._compile_state["ok"] = False
        elif spec.compile:
            self._features = self._compiled()
        self._device_name = device_name(device)

    @classmethod
    def for_config(cls, config: ExtractConfig, spec: ComputeSpec, device: torch.device) -> FeatureComputer:
        """Load ``config``'s backbone (model, checkpoint, flags, class label) on ``device``."""
        from diffprobe.extract.registry import load_backbone

        bb = load_backbone(config.model, config.checkpoint, random_weights=config.random_weights, device=device,
                           class_label=config.class_label, prompt=config.prompt, prompt_embedding=config.prompt_embedding,
                           **config.flag_dict)  # fmt: skip
        check_finite(bb, config.checkpoint or f"{config.model}'s weights", allow=config.allow_nonfinite)
        return cls(bb, device, spec)

    @property
    def provenance(self) -> dict[str, Any]:
        """How this computer produces values, for each unit's done marker: the device (with the
        GPU's name) and, with ``compile``, whether the forward really ran compiled."""
        out: dict[str, Any] = {"device": self._device_name}
        if self.spec.compile:
            out["compiled"] = bool(self._compile_state["ok"])
        if self.spec.cuda_graphs:
            out["cuda_graphs"] = self._graphs and bool(self._compile_state["ok"])
        return out

    def _compiled(self) -> Callable[..., dict[int, torch.Tensor]]:
        """``backbone.run_blocks`` through torch.compile; on any failure (no compiler, unsupported
        platform) log one clear line and fall back to eager mode."""
        eager = self.backbone.run_blocks
        try:
            # reduce-overhead: torch.compile's CUDA-graph mode (every forward has one fixed shape).
            compiled = torch.compile(eager, dynamic=False, mode="reduce-overhead" if self._graphs else None)
        except Exception as e:  # torch.compile raises many types depending on the platform
            log.warning("torch.compile is not available (%s); running eagerly", e)
            self._compile_state["ok"] = False
            return eager
        state = self._compile_state

        def call(*args: Any, **kwargs: Any) -> dict[int, torch.Tensor]:
            if state["ok"] is False:
                return eager(*args, **kwargs)
            try:
                out = compiled(*args, **kwargs)
                if state["ok"] is None:
                    log.info("torch.compile: compiled the forward pass")
                state["ok"] = True
                return out
            except Exception as e:
                if state["ok"]:
                    raise  # it worked before: a real error, not a compile failure
                log.warning("torch.compile failed (%s: %s); running eagerly", type(e).__name__, str(e).splitlines()[0][:200])
                state["ok"] = False
                return eager(*args, **kwargs)

        return call

    def _noisy(self, x0: torch.Tensor, ids: Sequence[str], p: Pass, noise: Mapping[Pass, torch.Tensor]) -> torch.Tensor:
        if self.backbone.schedule.noiseless:
            return x0  # an image model: q_sample would return x0 exactly, so no noise is drawn
        view, t, draw = p
        if p in noise:
            eps = noise[p].to(self.device, non_blocking=True)
        else:
            eps = noise_like(x0, ids, t, self.spec.seed, draw, view)
        return q_sample(x0, t, eps, self.backbone.schedule)

    def _forward(
        self,
        x0: torch.Tensor,
        ids: Sequence[str],
        passes: Sequence[Pass],
        by_t: Mapping[int, list[FeatureKey]],
        noise: Mapping[Pass, torch.Tensor],
    ) -> dict[Pass, dict[FeatureKey, torch.Tensor]]:
        """One U-Net forward for up to ``fuse`` (view, t, draw) passes of one view stacked along the batch.

        The forward always has ``fuse × forward_batch`` rows: a short group is filled with zero
        rows at the first pass's t. Each pass's rows therefore see the same shape, and the same
        timestep embeddings, whatever passes share its forward.

        Args:
            x0: (m, C, H, W) the view's clean inputs.
        Returns:
            {(view, t, draw): {key: (m, C, p, p) float32 pooled features of that pass}}.
        """
        m = x0.shape[0]
        fill = self.spec.fuse - len(passes)
        parts = [self._noisy(x0, ids, p, noise) for p in passes]
        if fill:
            parts.append(x0.new_zeros((fill * m, *x0.shape[1:])))
        x_t = torch.cat(parts) if len(parts) > 1 else parts[0]
        if self.spec.channels_last and x_t.dim() == 4:
            x_t = x_t.contiguous(memory_format=torch.channels_last)
        tt = Timesteps.blocks_of([t for _, t, _ in passes] + [passes[0][1]] * fill, m, self.device)
        wanted = {(k.block, k.pool) for _, t, _ in passes for k in by_t[t]}
        if self._graphs:
            torch.compiler.cudagraph_mark_step_begin()  # a new forward: the last one's outputs may be overwritten
        with autocast(self.spec.precision, self.device):
            feats = self._features(x_t, tt, tuple(sorted({b for b, _ in wanted})))
        pooled = {}
        for b, p in wanted:
            f = feats[b][: len(passes) * m].float()
            if self._graphs and f.dtype == feats[b].dtype:
                f = f.clone()  # .float() returned the graph's own buffer, which the next replay overwrites
            pooled[(b, p)] = (f if p is None else F.adaptive_avg_pool2d(f, p)).contiguous()
        return {p: {k: pooled[(k.block, k.pool)][j * m : (j + 1) * m] for k in by_t[p[1]]} for j, p in enumerate(passes)}

    def compute(
        self,
        x0: torch.Tensor,
        ids: Sequence[str],
        keys: Sequence[FeatureKey],
        noise: Mapping[Pass, torch.Tensor] | None = None,
    ) -> dict[FeatureKey, np.ndarray]:
        """Pooled features of every key for one forward batch: :meth:`launch` and wait for it.

        Returns:
            {key: (B, [V,] [K,] C, p, p) in the storage dtype} (see :meth:`launch`).
        """
        return self.launch(x0, ids, keys, noise).result()

    @torch.inference_mode()
    def launch(
        self,
        x0: torch.Tensor,
        ids: Sequence[str],
        keys: Sequence[FeatureKey],
        noise: Mapping[Pass, torch.Tensor] | None = None,
    ) -> Pending:
        """Start computing the pooled features of every key for one forward batch.

        On a GPU nothing here waits for the device: the forward and the copies of the pooled
        features into pinned host memory are queued, so the caller can file the previous batch's
        results (:meth:`Pending.result`) while this one computes. On a CPU the work is done on return.

        Every forward runs on exactly ``fuse × forward_batch`` rows (a short batch is zero-padded,
        a short group of passes is zero-filled): kernels may pick other algorithms, and round
        differently, for other batch shapes, so a fixed shape keeps stored bytes independent of how
        items were batched and of which other timesteps were computed alongside. Views never share
        a forward: view 0's forwards are exactly those of an extraction without views.

        Args:
            x0: (B, 3, S, S) clean images in [-1, 1] — (B, V, 3, S, S) with the spec's V > 1 views —
                B ≤ forward_batch (any device; moved here); the backbone's :meth:`~Backbone.encode`
                takes them to the space noise is added in.
            ids: B item ids (they seed the noise).
            keys: the (t, block, pool) keys to compute.
            noise: precomputed noise {(view, t, draw): (B, *noise_shape)} (from the data loader);
                passes not given are generated here with :func:`noise_like` — the same values either way.
        Returns:
            pending {key: (B, C, p, p)}, with a (V,) view axis after B when V > 1 and a (K,) draw
            axis after that with reduce="none" and K > 1.
        """
        n = x0.shape[0]
        m = self.spec.forward_batch
        nv = self.spec.views
        if n > m:
            raise ValueError(f"batch of {n} rows exceeds forward_batch={m}")
        if x0.dim() == 4:
            x0 = x0[:, None]
        if x0.shape[1] != nv:
            raise ValueError(f"expected {nv} view(s) per item, got x0 of shape {tuple(x0.shape)}")
        noise = dict(noise or {})
        if n < m:
            x0 = torch.cat([x0, x0.new_zeros((m - n, *x0.shape[1:]))])
            ids = [*ids, *(f"\0pad{i}" for i in range(m - n))]
            noise = {k: torch.cat([v, v.new_zeros((m - n, *v.shape[1:]))]) for k, v in noise.items()}
        # One memory layout too: conv kernels differ between NCHW and channels-last inputs.
        x0 = x0.to(self.device, non_blocking=True)
        by_t = group_by_t(keys)
        per_pass: dict[Pass, dict[FeatureKey, torch.Tensor]] = {}
        for v in range(nv):
            xv = x0[:, v].contiguous()
            with autocast(self.spec.precision, self.device):
                xv = self.backbone.encode(xv)  # the input transform (the identity, or pixels → VAE latents)
            xv = xv.float().contiguous()
            passes = [(v, t, d) for t in by_t for d in range(self.spec.draws)]
            for g in range(0, len(passes), self.spec.fuse):
                per_pass.update(self._forward(xv, ids, passes[g : g + self.spec.fuse], by_t, noise))
        out: dict[FeatureKey, torch.Tensor] = {}
        cuda = self.device.type == "cuda"
        for t, tkeys in by_t.items():
            for k in tkeys:
                per_view = [self._reduce([per_pass[(v, t, d)][k] for d in range(self.spec.draws)]) for v in range(nv)]
                val = per_view[0] if nv == 1 else torch.stack(per_view, dim=1)
                val = val[:n].to(getattr(torch, self.spec.out_dtype))
                if cuda:
                    host = torch.empty(val.shape, dtype=val.dtype, pin_memory=True)
                    host.copy_(val, non_blocking=True)
                    val = host
                out[k] = val.cpu()
        event = None
        if cuda:
            event = torch.cuda.Event()
            event.record()
        return Pending(out, event)

    def _reduce(self, draws: list[torch.Tensor]) -> torch.Tensor:
        """One view's K draws (each (m, C, p, p)): kept as (m, K, C, p, p) with reduce="none", else their mean."""
        if self.spec.reduce == "none" and len(draws) > 1:
            return torch.stack(draws, dim=1)
        return draws[0] if len(draws) == 1 else torch.stack(draws).mean(0)


@dataclass
class Pending:
    """Pooled features of one launched forward batch, on their way to host memory."""

    tensors: dict[FeatureKey, torch.Tensor]
    event: Any = None  # a torch.cuda.Event recorded after the copies; None on CPU

    def result(self) -> dict[FeatureKey, np.ndarray]:
        """Wait for the copies and return {key: (B, …) array in the storage dtype}."""
        if self.event is not None:
            self.event.synchronize()
        return {k: v.numpy() for k, v in self.tensors.items()}
