"""DifFeed, the paper's feedback method, as a scikit-learn estimator on images.

Pass 1 (no gradient) gives the decoder blocks of the feedback set F: read from a store when it holds
them (see :func:`~diffprobe.probes.images.stored_pass1`), else computed, stopping after the deepest
one. Feedback nets map each b ∈ F to its mirrored encoder block m(b) = L + 1 − b, where pass 2 — on
the same x_t, through the frozen U-Net, stopping after the read block — adds them; the read block goes
to the paper's attention head. Only the feedback nets and the head train (plain SGD by default, lr 1e-2,
28 epochs, lr × 0.1 every 7, batch 4, t = 150: the released recipe).

Noise stays deterministic: epoch e trains on noise draw e mod ``draws``; prediction uses draw 0
(``eval_draws="first"``) or averages the probabilities of every draw (``"mean"``). The released code
redraws noise at every call, also when testing.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from diffprobe.device import autocast, resolve_device
from diffprobe.extract.adm.feedback import Feedback, plan_feedback, require_adm
from diffprobe.extract.backbone import Backbone
from diffprobe.probes.base import ProbeBase, rng_seed, seeded
from diffprobe.probes.errors import ProbeError
from diffprobe.probes.feedback import DifFeedHead
from diffprobe.probes.images import ImageSet, noisy_batch
from diffprobe.probes.optim import TrainConfig, optimizer_and_schedule
from diffprobe.probes.training import amp_precision, count_hits

log = logging.getLogger(__name__)
EVAL_DRAWS = ("first", "mean")


class DifFeedProbe(ProbeBase):
    """DifFeed on images: ``fit(X, y)`` with X an :class:`~diffprobe.probes.images.ImageSet`.

    Args:
        model, checkpoint, flags, class_label, random_weights: the frozen backbone (as for extraction).
        t: the timestep (paper: 150). read_block: the block read after pass 2 (number or module path).
        feedback: decoder blocks fed back (None: the second output block of each decoder level).
        seed, draws: the noise (as for extraction); eval_draws: "first" or "mean".
        dim, heads, depth, mlp_ratio, max_size: the attention head (see :class:`AttentionHead`).
        optimizer, lr, momentum, weight_decay, epochs, batch_size, schedule, device, amp: see ``TrainConfig``.
        eval_batch_size: images per forward at prediction.
        checkpoint_dir: a folder for a checkpoint written after every epoch; a fit resumes from it.

    Learned: ``module_`` (:class:`DifFeedHead`), ``feedback_``, ``read_block_``, ``read_shape_``,
    ``loss_history_``.
    """

    takes_features = False

    def __init__(
        self,
        model: str = "adm-256-uncond",
        checkpoint: str | None = None,
        flags: Sequence[tuple[str, Any]] = (),
        class_label: int | None = None,
        random_weights: bool = False,
        t: int = 150,
        read_block: int | str = 24,
        feedback: Sequence[int] | None = None,
        seed: int = 0,
        draws: int = 1,
        eval_draws: str = "first",
        dim: int = 1024,
        heads: int = 8,
        depth: int = 2,
        mlp_ratio: float = 4.0,
        max_size: int = 16,
        optimizer: str = "sgd",
        lr: float = 1e-2,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        epochs: int = 28,
        batch_size: int = 4,
        schedule: str = "step",
        device: str = "auto",
        amp: bool = True,
        eval_batch_size: int = 64,
        checkpoint_dir: str | None = None,
        random_state: int | None = 0,
    ) -> None:
        self._keep(locals())

    # -- the backbone (frozen, never saved with the probe) ------------------------------------------
    def backbone(self) -> Backbone:
        """The frozen backbone on the probe's device, loaded once."""
        dev = resolve_device(self.device)
        bb = getattr(self, "_backbone", None)
        if bb is None or next(bb.parameters()).device.type != dev.type:
            from diffprobe.extract.registry import load_backbone

            bb = load_backbone(self.model, self.checkpoint, random_weights=self.random_weights, device=dev,
                               class_label=self.class_label, **dict(self.flags or ()))  # fmt: skip
            self._backbone = bb
        return bb

    def plan(self, bb: Backbone) -> tuple[int, Feedback]:
        """(read block number, feedback pairs) for ``bb``."""
        require_adm(bb.spec)
        read = bb.resolve_blocks([self.read_block])[0]
        return read, plan_feedback(bb.blocks, bb.spec.config.num_res_blocks, self.feedback, read)

    def _build_modules(self) -> None:
        fb = Feedback(tuple((int(b), int(m)) for b, m in self.feedback_["pairs"]),
                      {int(k): (int(v[0]), int(v[1]), int(v[2])) for k, v in self.feedback_["shapes"].items()})  # fmt: skip
        shape = (int(self.read_shape_[0]), int(self.read_shape_[1]), int(self.read_shape_[2]))
        with seeded(rng_seed(self.random_state)):
            head = DifFeedHead(fb, int(self.read_block_), shape, len(self.classes_), self.dim, self.heads, self.depth,
                               self.mlp_ratio, self.max_size)  # fmt: skip
        self.module_ = head.to(resolve_device(self.device))

    # -- passes ------------------------------------------------------------------------------------
    def _x_t(self, X: ImageSet, idx: np.ndarray, draw: int, bb: Backbone) -> Tensor:
        return noisy_batch([X.items[i] for i in idx], bb.image_size, self.t, self.seed, draw, bb.schedule, resolve_device(self.device))

    def _pass1(self, X: ImageSet, idx: np.ndarray, draw: int, bb: Backbone, x_t: Tensor) -> dict[int, Tensor]:
        """Pass 1's feedback sources for items ``idx``: from the store when X carries them, else computed."""
        stored = X.pass1_batch(idx, draw, x_t.device)
        if stored is not None:
            return stored
        with torch.no_grad():
            return bb.run_blocks(x_t, self.t, tuple(b for b, _ in self.module_.feedback.pairs))

    # -- fit -----------------------------------------------------------------------------------------
    def _fit(self, X: Any, y: np.ndarray) -> None:
        if not isinstance(X, ImageSet):
            raise ProbeError(f"expected DifFeed's X to be an ImageSet (images, not features), got {type(X).__name__}")
        if self.eval_draws not in EVAL_DRAWS or self.draws < 1:
            raise ProbeError(f"expected eval_draws in {EVAL_DRAWS} and draws ≥ 1, got {self.eval_draws!r} and {self.draws}")
        bb = self.backbone()
        read, fb = self.plan(bb)
        info = bb.blocks[read - 1]
        self.read_block_, self.read_shape_, self.feedback_ = read, [info.channels, info.height, info.width], fb.to_dict()
        self._build_modules()
        cfg = TrainConfig.of(self)
        opt, sched = optimizer_and_schedule(cfg, [{"params": list(self.module_.parameters())}], cfg.epochs)
        start, history = self._resume(X, y, opt, sched)
        self.loss_history_ = self._epochs(X, y, bb, cfg, opt, sched, start, history)
        self.module_.eval()

    def _epochs(self, X: ImageSet, y: np.ndarray, bb: Backbone, cfg: TrainConfig, opt: torch.optim.Optimizer, sched: Any,
                start: int, history: list[float]) -> list[float]:  # fmt: skip
        from tqdm.auto import tqdm

        from diffprobe.progress import bar_disabled

        dev = resolve_device(self.device)
        yt = torch.as_tensor(y, device=dev)
        steps = -(-len(X) // cfg.batch_size)  # the bar counts steps (one epoch can take minutes), the epoch in its postfix
        with tqdm(total=cfg.epochs * steps, initial=start * steps, desc="difffeed", unit="step", leave=False, disable=bar_disabled()) as bar:
            for epoch in range(start, cfg.epochs):
                bar.set_postfix(epoch=f"{epoch + 1}/{cfg.epochs}", draw=epoch % self.draws, refresh=False)
                draw = epoch % self.draws
                order = torch.randperm(len(X), generator=torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch)).numpy()
                total, hits = torch.zeros((), device=dev), torch.zeros((), device=dev)
                self.module_.train()
                for s in range(0, len(X), cfg.batch_size):
                    idx = order[s : s + cfg.batch_size]
                    x_t = self._x_t(X, idx, draw, bb)
                    pass1 = self._pass1(X, idx, draw, bb, x_t)
                    with autocast(amp_precision(dev, cfg.amp), dev):
                        logits = self.module_(bb, x_t, self.t, pass1)
                    loss = F.cross_entropy(logits.float(), yt[idx])
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    total += loss.detach() * len(idx)
                    hits += count_hits(logits, yt[idx])
                    bar.update(1)
                sched.step()
                loss_sum, hit_sum = torch.stack([total, hits]).tolist()
                history.append(loss_sum / len(X))
                bar.set_postfix(epoch=f"{epoch + 1}/{cfg.epochs}", loss=f"{history[-1]:.4f}", acc=f"{hit_sum / len(X):.3f}", draw=draw)
                self._save_epoch(X, y, epoch + 1, opt, sched, history)
        return history

    # -- epoch checkpoints ---------------------------------------------------------------------------
    def _checkpoint_file(self) -> Path | None:
        return Path(self.checkpoint_dir) / "difffeed-checkpoint.pt" if self.checkpoint_dir else None

    def _fingerprint(self, X: ImageSet, y: np.ndarray) -> str:
        """What a checkpoint must have been written for: these parameters, items and labels."""
        params = {k: v for k, v in self.get_params().items() if k not in ("checkpoint_dir", "device")}
        text = repr((sorted(params.items()), [it.id for it in X.items], y.tolist()))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def _save_epoch(self, X: ImageSet, y: np.ndarray, epoch: int, opt: torch.optim.Optimizer, sched: Any, history: list[float]) -> None:
        path = self._checkpoint_file()
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {"fingerprint": self._fingerprint(X, y), "epoch": epoch, "module": self.module_.state_dict(),
                 "optimizer": opt.state_dict(), "schedule": sched.state_dict(), "history": history}  # fmt: skip
        tmp = path.with_suffix(".tmp")
        torch.save(state, tmp)
        os.replace(tmp, path)  # atomic: a killed run leaves the previous epoch's checkpoint whole

    def _resume(self, X: ImageSet, y: np.ndarray, opt: torch.optim.Optimizer, sched: Any) -> tuple[int, list[float]]:
        path = self._checkpoint_file()
        if path is None or not path.exists():
            return 0, []
        state = torch.load(path, map_location=resolve_device(self.device), weights_only=True)
        if state.get("fingerprint") != self._fingerprint(X, y):
            raise ProbeError(f"{path} was written for other parameters or data; use another checkpoint_dir or delete it")
        self.module_.load_state_dict(state["module"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["schedule"])
        log.info("DifFeed: resuming from %s after epoch %d", path, state["epoch"])
        return int(state["epoch"]), list(state["history"])

    # -- predict -------------------------------------------------------------------------------------
    def _predict_proba(self, X: Any) -> np.ndarray:
        if not isinstance(X, ImageSet):
            raise ProbeError(f"expected DifFeed's X to be an ImageSet (images, not features), got {type(X).__name__}")
        from tqdm.auto import tqdm

        from diffprobe.progress import bar_disabled

        bb, dev = self.backbone(), resolve_device(self.device)
        self.module_.eval()
        draws = range(self.draws) if self.eval_draws == "mean" else range(1)
        proba = np.zeros((len(X), len(self.classes_)), dtype=np.float64)
        starts = [(d, s) for d in draws for s in range(0, len(X), self.eval_batch_size)]
        for draw, s in tqdm(starts, desc="difffeed: evaluating", unit="batch", leave=False, disable=bar_disabled()):
            idx = np.arange(s, min(s + self.eval_batch_size, len(X)))
            x_t = self._x_t(X, idx, draw, bb)
            with torch.no_grad(), autocast(amp_precision(dev, self.amp), dev):
                logits = self.module_(bb, x_t, self.t, self._pass1(X, idx, draw, bb, x_t))
            proba[idx] += torch.softmax(logits.float(), dim=-1).cpu().numpy()
        return (proba / len(draws)).astype(np.float32)
