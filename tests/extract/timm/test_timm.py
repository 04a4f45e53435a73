"""The timm family, on tiny random models saved to disk: features against timm's own
``forward_intermediates`` and evaluation transform, early exit, no timestep, identity, errors, and
probes and CKA downstream (a U-Net × ViT map against an ADM store of the same images)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

pytest.importorskip("timm", reason="the optional extra is not installed: pip install 'diffprobe[timm]'", exc_type=ImportError)

import timm  # noqa: E402
from PIL import Image  # noqa: E402

import diffprobe  # noqa: E402
from diffprobe.cli import main  # noqa: E402
from diffprobe.errors import CheckpointError, ConfigError  # noqa: E402
from tests.extract.timm import tiny  # noqa: E402
from tests.helpers import extract_config, make_manifest  # noqa: E402


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("timm")
    return {"vit_dir": tiny.vit_dir(root / "vit"), "vit_file": tiny.vit_file(root / "vit.pt"),
            "resnet": tiny.resnet_file(root / "resnet.safetensors"), "vit_other": tiny.vit_file(root / "vit1.pt", seed=1)}  # fmt: skip


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """20 train + 10 val Fashion-MNIST images."""
    return make_manifest(tmp_path_factory.mktemp("data") / "tiny.csv", per_class_train=2, per_class_val=1)


def cli(*argv: str) -> str:
    r = CliRunner().invoke(main, list(argv))
    assert r.exit_code == 0, r.output
    return r.output


def extract_cli(data: Path, out: Path, *args: str) -> str:
    return cli("-q", "extract", str(data), "--model", "timm", "--out", str(out), "--device", "cpu", "--loader-workers", "0",
               "--no-progress", *args)  # fmt: skip


def timm_reference(net: torch.nn.Module, paths: list[str], return_prefix: bool = False) -> list:
    """timm's own evaluation transform of each image, then its own ``forward_intermediates``."""
    cfg = timm.data.resolve_data_config({}, model=net)
    tf = timm.data.create_transform(**cfg)
    x = torch.stack([tf(Image.open(p).convert("RGB")) for p in paths])
    with torch.no_grad():
        return net.forward_intermediates(x, intermediates_only=True, **({"return_prefix_tokens": True} if return_prefix else {}))


CASES = {  # name: (checkpoint, flags, timm model, features)
    "vit-map": ("vit_dir", "", tiny.vit, "map"),
    "vit-cls": ("vit_file", tiny.VIT_FLAGS + ",features=cls", tiny.vit, "cls"),
    "resnet": ("resnet", tiny.RESNET_FLAGS, tiny.resnet, "map"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_stored_features_equal_timms_forward_intermediates(case, ckpts, data, tmp_path):
    ckpt, flags, make, features = CASES[case]
    spec = diffprobe.model_spec("timm", diffprobe_flags(flags), ckpts[ckpt])
    n = len(spec.blocks)
    out = tmp_path / "s.zarr"
    extract_cli(data, out, "--checkpoint", str(ckpts[ckpt]), *(["--flags", flags] if flags else []), "--blocks", f"1-{n}",
                "--pool", "full", "--dtype", "float32", "--splits", "val")  # fmt: skip
    net = make()  # built for 32×32 inputs (img_size=32, or input_size=32 for the ResNet), so timm's transform
    net.pretrained_cfg = {**net.pretrained_cfg, "input_size": (3, 32, 32)}  # resizes to 32 / crop_pct and crops 32
    with diffprobe.open_store(out) as s:
        paths = [str(p) for p in s.paths("val")]
        ref = timm_reference(net, paths, return_prefix=features == "cls")
        assert len(ref) == n
        for b in spec.blocks:
            want = ref[b.number - 1]
            want = want[1][:, 0, :, None, None] if features == "cls" else want
            stored = torch.from_numpy(s.read("val", 0, b.number, None))
            assert stored.shape == want.shape == (10, b.channels, b.height, b.width)
            torch.testing.assert_close(stored, want, rtol=1e-5, atol=1e-6 * float(want.abs().max()), msg=f"{case} block {b.number}")


def test_concurrent_forward_streams_store_what_one_stream_does(ckpts, data, tmp_path, monkeypatch):
    """Hooked families capture per thread: a CPU extraction's streams run one network at once."""
    from diffprobe.threads import CORES_VAR
    from tests.helpers import read_all

    stores = {}
    for cores in (1, 2):
        monkeypatch.setenv(CORES_VAR, str(cores))
        stores[cores] = tmp_path / f"{cores}.zarr"  # 2 images per forward: 10 forwards of the train split at once, two by two
        extract_cli(data, stores[cores], "--checkpoint", str(ckpts["vit_dir"]), "--blocks", "1-3", "--pool", "1,full", "--forward-batch", "2")
    one, two = read_all(stores[1]), read_all(stores[2])
    assert one.keys() == two.keys() and len(one) == 12
    assert all(one[k].tobytes() == two[k].tobytes() for k in one)


def diffprobe_flags(text: str) -> dict:
    from diffprobe.keyvalue import load_pairs

    return load_pairs(text)


def test_block_capture_is_exact_and_stops_after_the_deepest_block(ckpts):
    bb = diffprobe.load_backbone("timm", ckpts["vit_dir"])
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        want = bb.net.forward_intermediates(x, intermediates_only=True)
        calls = []
        h = bb.net.blocks[2].register_forward_hook(lambda *a: calls.append(1))
        got = bb.features(x, 0, blocks=[1, 2])
        h.remove()
    assert calls == []  # block 3 never ran
    for n in (1, 2):
        torch.testing.assert_close(got[n], want[n - 1], rtol=1e-6, atol=1e-6 * float(want[n - 1].abs().max()))
    # the input transform: images at 35 = 32 / crop_pct 0.9 → the centre 32×32 crop (offset round(1.5) = 2, as
    # torchvision's CenterCrop), pixels in [0, 1] normalised by the model's mean and std (0.5 for this ViT)
    x0 = torch.rand(2, 3, 35, 35) * 2 - 1
    torch.testing.assert_close(bb.encode(x0), ((x0[..., 2:34, 2:34] + 1) / 2 - 0.5) / 0.5)


def test_no_timestep_and_store_info_says_so(ckpts, data, tmp_path):
    out = tmp_path / "s.zarr"
    summary = extract_cli(data, out, "--checkpoint", str(ckpts["vit_dir"]), "--blocks", "2", "--pool", "1")
    assert "failed: 0" in summary
    with diffprobe.open_store(out) as s:
        assert s.keys("val") == ["t0000_b02_p1"]
        assert s.attrs["identity"]["family"] == "timm" and s.attrs["identity"]["noise"] == "none"
    info = cli("store", "info", str(out))
    assert "timesteps: none (a timm image model: features of the clean image, stored as t = 0)" in info
    for bad, says in ((["--t", "5"], "image model without noise"), (["--draws", "2"], "image model without noise"),
                      (["--class-label", "3"], "without conditioning")):  # fmt: skip
        r = CliRunner().invoke(main, ["extract", str(data), "--model", "timm", "--checkpoint", str(ckpts["vit_dir"]), "--blocks", "1",
                                      "--out", str(tmp_path / "bad.zarr"), *bad])  # fmt: skip
        assert r.exit_code != 0 and says in r.output and "Traceback" not in r.output, r.output
        assert not (tmp_path / "bad.zarr").exists()
    r = CliRunner().invoke(main, ["extract", str(data), "--model", "adm-32-fmnist", "--blocks", "1", "--out", str(tmp_path / "a.zarr")])
    assert r.exit_code != 0 and "pass --t" in r.output, r.output


def test_identity_follows_the_weights(ckpts, data, tmp_path):
    out = tmp_path / "s.zarr"
    args = ("--flags", tiny.VIT_FLAGS, "--blocks", "1", "--splits", "val")
    extract_cli(data, out, "--checkpoint", str(ckpts["vit_file"]), *args)
    again = extract_cli(data, out, "--checkpoint", str(ckpts["vit_file"]), *args)
    assert "units: 0 run, 1 already done" in again
    r = CliRunner().invoke(main, ["extract", str(data), "--model", "timm", "--checkpoint", str(ckpts["vit_other"]), "--out", str(out), *args])
    assert r.exit_code != 0 and "checkpoint_sha256" in r.output, r.output


def test_clear_errors(ckpts, tmp_path):
    with pytest.raises(CheckpointError, match="does not fit this model"):  # the ResNet's weights for a ViT
        diffprobe.load_backbone("timm", ckpts["resnet"], **diffprobe_flags(tiny.VIT_FLAGS))
    with pytest.raises(ConfigError, match="arch="):
        diffprobe.model_spec("timm")
    with pytest.raises(ConfigError, match="timm has no model"):
        diffprobe.model_spec("timm", {"arch": "no_such_net"})
    with pytest.raises(ConfigError, match="features=cls needs a ViT"):
        diffprobe.model_spec("timm", {**diffprobe_flags(tiny.RESNET_FLAGS), "features": "cls"})
    r = CliRunner().invoke(main, ["blocks", "mae-vit-b16", "--checkpoint", "timm/vit_base_patch16_224.mae"])
    assert r.exit_code != 0 and "hf download timm/vit_base_patch16_224.mae" in r.output, r.output


def test_presets_describe_the_papers_baselines_without_weights():
    for name, n, last in (("mae-vit-b16", 12, (768, 14)), ("dino-vit-b16", 12, (768, 14)), ("dinov2-vit-b14", 12, (768, 37)),
                          ("resnet50-sup", 5, (2048, 7)), ("clip-vit-b16", 12, (768, 14))):  # fmt: skip
        spec = diffprobe.model_spec(name)
        assert spec.family == "timm" and len(spec.blocks) == n and (spec.blocks[-1].channels, spec.blocks[-1].height) == last, name
    assert diffprobe.model_spec("mae-vit-b16").config.mean == (0.485, 0.456, 0.406)
    assert diffprobe.model_spec("clip-vit-b16").config.mean[0] == pytest.approx(0.48145466)


def test_probe_and_cka_against_an_adm_store(ckpts, data, tmp_path):
    adm, vit = tmp_path / "adm.zarr", tmp_path / "vit.zarr"
    diffprobe.extract_features(extract_config(data, adm, timesteps=(50,), blocks=(4, 10), pools=(1,)), progress=False)
    extract_cli(data, vit, "--checkpoint", str(ckpts["vit_dir"]), "--blocks", "1-3", "--pool", "1")
    out = cli("probe", "logistic", str(vit), "--block", "3", "--pool", "1")
    assert "logistic probe on t0000_b03_p1" in out and "top-1" in out
    cli("cka", "stores", str(adm), str(vit), "--split", "val", "--out", str(tmp_path / "cka"))
    res = json.loads((tmp_path / "cka" / "cka.json").read_text())
    assert res["row_labels"] == ["4", "10"] and res["col_labels"] == ["blocks.0", "blocks.1", "blocks.2"]
    assert res["row_axis"] == "store A: adm-32-fmnist block (t = 50, pool 1)" and res["col_axis"] == "store B: timm layer (pool 1)"
    m = np.array(res["cka"])
    assert m.shape == (2, 3) and np.all((m > 0) & (m <= 1 + 1e-9))
    # by position: the same rows (both stores list the same images in the same order) give the same matrix
    cli("cka", "stores", str(adm), str(vit), "--split", "val", "--pair-by", "position", "--out", str(tmp_path / "cka2"))
    np.testing.assert_allclose(np.array(json.loads((tmp_path / "cka2" / "cka.json").read_text())["cka"]), m, rtol=1e-12)


@pytest.mark.gpu
def test_on_a_gpu_features_match_the_cpu(ckpts):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    x0 = torch.rand(4, 3, 35, 35) * 2 - 1
    cpu, bb = diffprobe.load_backbone("timm", ckpts["vit_dir"]), diffprobe.load_backbone("timm", ckpts["vit_dir"], device="cuda")
    with torch.no_grad():
        want = cpu.features(cpu.encode(x0), 0, [1, 3])
        got = bb.features(bb.encode(x0.cuda()), 0, [1, 3])
    for n in (1, 3):
        torch.testing.assert_close(got[n].cpu(), want[n], rtol=1e-4, atol=1e-4 * float(want[n].abs().max()))
