"""DifFeed on the bundled model and slice: the passes, what trains, pass 1 from a store, save/load, resume."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import diffprobe
from diffprobe.extract.adm.feedback import plan_feedback
from diffprobe.extract.sources.discover import discover
from diffprobe.pipelines.difffeed import FeedbackModel, with_pass1
from diffprobe.probes.difffeed import DifFeedProbe
from diffprobe.probes.feedback import DifFeedHead
from diffprobe.probes.images import ImageSet, noisy_batch
from diffprobe.probes.io import TrainedProbe, load_probe, save_probe
from tests.helpers import FMNIST, FMNIST_CKPT

READ = 15  # five blocks after the bundled model's middle block (10)
SMALL = dict(model="adm-32-fmnist", read_block=READ, dim=16, heads=2, depth=1, batch_size=4, device="cpu", t=150)


@pytest.fixture(scope="module")
def images() -> ImageSet:
    """Two training images of each of four classes."""
    spec = discover(FMNIST, ("train",))
    by: dict[int, list] = {}
    for it in spec.splits["train"]:
        by.setdefault(it.label, []).append(it)
    return ImageSet(tuple(it for label in range(4) for it in by[label][:2]))


def test_feedback_set_of_the_paper_and_of_the_bundled_model(fmnist_backbone):
    from diffprobe.extract.adm.family import measure_blocks
    from diffprobe.extract.presets import PRESETS

    cfg = PRESETS["adm-256-uncond"].config
    paper = plan_feedback(measure_blocks(cfg), cfg.num_res_blocks, None, 24)
    assert paper.pairs == ((21, 17), (24, 14), (27, 11), (30, 8), (33, 5), (36, 2))
    ours = plan_feedback(fmnist_backbone.blocks, 2, None, READ)
    assert ours.pairs == ((12, 8), (15, 5), (18, 2))
    with pytest.raises(diffprobe.errors.BlockError, match="not a decoder block"):
        plan_feedback(fmnist_backbone.blocks, 2, [5], READ)
    with pytest.raises(diffprobe.errors.BlockError, match="not before the read block 7"):
        plan_feedback(fmnist_backbone.blocks, 2, [12], 7)


def test_zero_feedback_makes_pass_2_equal_pass_1(fmnist_backbone, images):
    fb = plan_feedback(fmnist_backbone.blocks, 2, None, READ)
    head = DifFeedHead(fb, READ, (128, 16, 16), 4, 16, 2, 1, 4.0, 16).eval()
    head.feedback.zero_()
    x_t = noisy_batch(images.items[:4], 32, 150, 0, 0, fmnist_backbone.schedule, torch.device("cpu"))
    with torch.no_grad():
        pass1 = fmnist_backbone.run_blocks(x_t, 150, (*fb.sources, READ))
        second = head.second_pass(fmnist_backbone, x_t, 150, pass1)
    assert torch.equal(second, pass1[READ])


def test_truncated_pass_2_equals_the_full_pass_2(fmnist_backbone, images):
    fb = plan_feedback(fmnist_backbone.blocks, 2, None, READ)
    head = DifFeedHead(fb, READ, (128, 16, 16), 4, 16, 2, 1, 4.0, 16).eval()
    x_t = noisy_batch(images.items[:4], 32, 150, 0, 0, fmnist_backbone.schedule, torch.device("cpu"))
    with torch.no_grad():
        pass1 = fmnist_backbone.run_blocks(x_t, 150, fb.sources)
        add = head.feedback(pass1)
        t = torch.full((4,), 150)
        _, full = fmnist_backbone.net.run(x_t, t, capture=[READ], add=add)  # the whole U-Net, no early exit
        assert torch.equal(head.second_pass(fmnist_backbone, x_t, 150, pass1), full[READ])


def test_a_step_trains_only_the_feedback_and_the_head(images):
    est = DifFeedProbe(**SMALL, epochs=1)
    est.fit(images, images.labels)
    bb = est.backbone()
    before = {k: v.clone() for k, v in diffprobe.load_backbone("adm-32-fmnist", FMNIST_CKPT).state_dict().items()}
    assert all(torch.equal(v, before[k]) for k, v in bb.state_dict().items())
    assert all(p.grad is None for p in bb.parameters())
    params = dict(est.module_.named_parameters())
    assert any(k.startswith("feedback.") for k in params) and any(k.startswith("head.") for k in params)
    for name, p in params.items():
        assert p.grad is not None and bool(p.grad.abs().sum() > 0), name


def test_pass_1_from_a_store_equals_pass_1_online(tmp_path, images):
    data = tmp_path / "data"
    for it in images.items:  # an ImageFolder of the same images: the same item ids
        dst = data / it.id
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(open(it.path, "rb").read())
    spec = discover(data)
    online = ImageSet(tuple(spec.splits["train"]))
    diffprobe.extract_features(diffprobe.ExtractConfig(
        data=str(data), out=str(tmp_path / "p1.zarr"), model="adm-32-fmnist", timesteps=(150,), blocks=(12, 15, 18),
        pools=(None,), dtype="float32", forward_batch=4, batch_size=4, loader_workers=0,
    ), progress=False)  # fmt: skip
    est = DifFeedProbe(**SMALL, epochs=1)
    with diffprobe.open_store(tmp_path / "p1.zarr") as store:
        stored = with_pass1(online, store, "train", est, FeedbackModel.of(est))
        assert stored.pass1 and stored.rows is not None
        est.fit(online, online.labels)  # builds the feedback nets; pass 1 online
        bb, idx = est.backbone(), np.arange(4)
        x_t = est._x_t(online, idx, 0, bb)
        from_store = est._pass1(stored, idx, 0, bb, x_t)
        computed = est._pass1(online, idx, 0, bb, x_t)
        assert sorted(from_store) == sorted(computed) == [12, 15, 18]
        for b in computed:  # the same forward shape (4 images) and fp32 storage: the same numbers
            torch.testing.assert_close(from_store[b], computed[b], rtol=1e-5, atol=1e-5)
        with torch.no_grad():
            torch.testing.assert_close(est.module_.second_pass(bb, x_t, 150, from_store),
                                       est.module_.second_pass(bb, x_t, 150, computed), rtol=1e-4, atol=1e-4)  # fmt: skip
        other = DifFeedProbe(**{**SMALL, "seed": 1})
        assert with_pass1(online, store, "train", other, FeedbackModel.of(other)).pass1 == {}  # other noise: computed online instead


def test_save_load_predict_round_trip(tmp_path, images):
    est = DifFeedProbe(**SMALL, epochs=1).fit(images, images.labels)
    proba = est.predict_proba(images)
    key = diffprobe.FeatureKey(150, READ, None)
    from diffprobe.probes.data import KeyInfo

    save_probe(TrainedProbe(est, (KeyInfo(key.name, key),), [str(c) for c in range(4)]), tmp_path / "saved")
    loaded = load_probe(tmp_path / "saved")
    assert loaded.probe == "difffeed" and loaded.estimator.feedback_ == est.feedback_
    np.testing.assert_array_equal(loaded.estimator.predict_proba(images), proba)


def test_resuming_from_the_epoch_checkpoint_gives_the_same_weights(tmp_path, images, monkeypatch):
    whole = DifFeedProbe(**SMALL, epochs=2).fit(images, images.labels)
    ckpt = tmp_path / "ckpt"
    real = DifFeedProbe._save_epoch

    def killed_after_first(self, X, y, epoch, *rest):
        real(self, X, y, epoch, *rest)
        if epoch == 1:
            raise KeyboardInterrupt("killed")

    monkeypatch.setattr(DifFeedProbe, "_save_epoch", killed_after_first)
    with pytest.raises(KeyboardInterrupt):
        DifFeedProbe(**SMALL, epochs=2, checkpoint_dir=str(ckpt)).fit(images, images.labels)
    monkeypatch.setattr(DifFeedProbe, "_save_epoch", real)
    resumed = DifFeedProbe(**SMALL, epochs=2, checkpoint_dir=str(ckpt)).fit(images, images.labels)
    assert resumed.loss_history_ == whole.loss_history_
    for (k, a), b in zip(whole.module_.state_dict().items(), resumed.module_.state_dict().values()):
        assert torch.equal(a, b), k
    with pytest.raises(diffprobe.probes.ProbeError, match="other parameters or data"):
        DifFeedProbe(**{**SMALL, "lr": 0.5}, epochs=2, checkpoint_dir=str(ckpt)).fit(images, images.labels)
