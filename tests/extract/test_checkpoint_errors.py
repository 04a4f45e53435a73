"""Every way a checkpoint can be wrong gives an error that says what to do."""

from __future__ import annotations

import collections

import pytest
import torch

import diffprobe
from diffprobe.errors import CheckpointError, CheckpointNotFoundError
from tests.helpers import FMNIST_CKPT, MINI_CKPT


@pytest.fixture(scope="module")
def fmnist_sd():
    return torch.load(FMNIST_CKPT, weights_only=True)


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointNotFoundError, match="checkpoint not found"):
        diffprobe.load_backbone("adm-32-fmnist", tmp_path / "nope.pt")
    with pytest.raises(FileNotFoundError):  # also a built-in FileNotFoundError
        diffprobe.load_backbone("adm-32-fmnist", tmp_path / "nope.pt")


def test_not_a_torch_file(tmp_path):
    (tmp_path / "x.pt").write_bytes(b"hello, not a checkpoint")
    with pytest.raises(CheckpointError, match="x.pt is not a PyTorch checkpoint: it looks like a text file"):
        diffprobe.load_backbone("adm-32-fmnist", tmp_path / "x.pt")
    (tmp_path / "flags.json").write_text('{"image_size": 32}')
    with pytest.raises(CheckpointError, match="looks like a JSON file \\(model flags go in --flags\\)"):
        diffprobe.load_backbone("adm-32-fmnist", tmp_path / "flags.json")
    import zipfile

    with zipfile.ZipFile(tmp_path / "bad.pt", "w") as z:  # a zip archive, but not one torch.save wrote
        z.writestr("hello.txt", "hello")
    with pytest.raises(CheckpointError, match="cannot read .* as a PyTorch checkpoint"):
        diffprobe.load_backbone("adm-32-fmnist", tmp_path / "bad.pt")


def test_not_a_state_dict(tmp_path):
    torch.save({"step": 10, "lr": 1e-4}, tmp_path / "x.pt")
    with pytest.raises(CheckpointError, match="is not a state dict.*'step', 'lr'"):
        diffprobe.load_backbone("adm-32-fmnist", tmp_path / "x.pt")
    torch.save([torch.zeros(1)], tmp_path / "y.pt")
    with pytest.raises(CheckpointError, match="holds a list"):
        diffprobe.load_backbone("adm-32-fmnist", tmp_path / "y.pt")


@pytest.mark.parametrize("wrap", ["ema", "state_dict", "model", "ddp"])
def test_training_checkpoint_wrappers_are_unwrapped(tmp_path, fmnist_sd, fmnist_backbone, wrap):
    if wrap == "ddp":
        obj = {"model": {f"module.{k}": v for k, v in fmnist_sd.items()}, "step": 3596}
    else:
        obj = {wrap: fmnist_sd, "step": 3596, "opt": {"lr": 2e-4}}
    torch.save(obj, tmp_path / "train.pt")
    bb = diffprobe.load_backbone("adm-32-fmnist", tmp_path / "train.pt")
    x = torch.zeros(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(bb(x, 50), fmnist_backbone(x, 50))


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_unsafe_pickle_is_refused(tmp_path, capsys):
    torch.save({"weights": torch.zeros(2), "x": _Evil()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="refusing to load .*arbitrary code"):
        diffprobe.load_backbone("adm-32-fmnist", tmp_path / "evil.pt")
    assert "pwned" not in capsys.readouterr().out


def test_class_conditional_checkpoint_on_unconditional_preset(tmp_path, fmnist_sd):
    sd = dict(fmnist_sd)
    sd["label_emb.weight"] = torch.zeros(10, 256)
    torch.save(sd, tmp_path / "cond.pt")
    with pytest.raises(CheckpointError) as e:
        diffprobe.load_backbone("adm-32-fmnist", tmp_path / "cond.pt")
    msg = str(e.value)
    assert "0 missing and 1 unexpected keys" in msg and "label_emb.weight" in msg
    assert "this is a class-conditional model" in msg
    # following the hint works
    bb = diffprobe.load_backbone("adm-32-fmnist", tmp_path / "cond.pt", class_cond=True, num_classes=10, class_label=0)
    assert bb.config.class_cond


def test_256_cond_hint_names_the_preset():
    from diffprobe.extract.adm.diagnose import mismatch_hints
    from diffprobe.extract.registry import PRESETS

    sd = {"label_emb.weight": torch.zeros(1000, 1024, device="meta")}
    hints = mismatch_hints(PRESETS["adm-256-uncond"].config, sd)
    assert any("class-conditional model; use adm-256-cond" in h for h in hints)


def test_wrong_preset_lists_missing_unexpected_and_flags(mini_flags):
    with pytest.raises(CheckpointError) as e:
        diffprobe.load_backbone("adm-32-fmnist", MINI_CKPT)
    msg = str(e.value)
    assert "missing" in msg and "unexpected" in msg and "(first 5)" in msg
    assert "learn_sigma=True" in msg or "input blocks" in msg


def test_shape_mismatch_names_key_expected_and_got(tmp_path, fmnist_sd):
    sd = collections.OrderedDict(fmnist_sd)
    sd["out.2.weight"] = torch.zeros(6, 64, 3, 3, dtype=torch.float16)
    sd["out.2.bias"] = torch.zeros(6, dtype=torch.float16)
    torch.save(sd, tmp_path / "sigma.pt")
    with pytest.raises(CheckpointError, match=r"out.2.weight expected \[3, 64, 3, 3\], got \[6, 64, 3, 3\]") as e:
        diffprobe.load_backbone("adm-32-fmnist", tmp_path / "sigma.pt")
    assert "learn_sigma=True" in str(e.value)


def test_sha256_for_provenance(fmnist_backbone):
    import hashlib

    assert fmnist_backbone.checkpoint_sha256 == hashlib.sha256(FMNIST_CKPT.read_bytes()).hexdigest()
    assert diffprobe.load_backbone("adm-32-fmnist").checkpoint_sha256 == fmnist_backbone.checkpoint_sha256  # bundled
    assert diffprobe.load_backbone("adm-32-fmnist", random_weights=True).checkpoint_sha256 is None
