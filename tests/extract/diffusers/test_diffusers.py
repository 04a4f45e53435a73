"""The diffusers family, on tiny random models saved to disk: exact features against each model's own
forward (captured with forward hooks, noised by diffusers' own scheduler), early exit, identity,
conditioning, and the whole pipeline downstream."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

pytest.importorskip("diffusers", reason="the optional extra is not installed: pip install 'diffprobe[diffusers]'")
pytest.importorskip("transformers", reason="the optional extra is not installed: pip install 'diffprobe[diffusers]'")

import diffusers  # noqa: E402

import diffprobe  # noqa: E402
from diffprobe.cli import main  # noqa: E402
from diffprobe.errors import CheckpointError, ConfigError, StoreError  # noqa: E402
from diffprobe.extract.sources.decode import load_image  # noqa: E402
from tests.extract.diffusers import tiny  # noqa: E402
from tests.helpers import extract_config, make_manifest, read_all  # noqa: E402

T = 100


@pytest.fixture(scope="module")
def dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("diffusers")
    return {"ddpm": tiny.ddpm_dir(root / "ddpm"), "sd": tiny.sd_dir(root / "sd"), "dit": tiny.dit_dir(root / "dit")}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """10 train + 10 val Fashion-MNIST images (one per class)."""
    return make_manifest(tmp_path_factory.mktemp("data") / "tiny.csv", per_class_train=1, per_class_val=1)


def extract_cli(data: Path, checkpoint: Path, out: Path, *args: str) -> None:
    argv = ["-q", "extract", str(data), "--model", "diffusers", "--checkpoint", str(checkpoint), "--out", str(out), "--device", "cpu",
            "--loader-workers", "0", "--no-progress", *args]  # fmt: skip
    r = CliRunner().invoke(main, argv)
    assert r.exit_code == 0, r.output


# -- the reference: each model's own forward ---------------------------------------------------------
def own_forward(kind: str, d: Path, x0: torch.Tensor, ids: list[str], t: int, paths: list[str]) -> dict[str, torch.Tensor]:
    """{module path: output} of every module named by ``paths``, from the full diffusers forward of
    the images ``x0`` noised by diffusers' own scheduler with diffprobe's noise."""
    sched_cfg = diffusers.DDPMScheduler.load_config(d / "scheduler")
    sched = getattr(diffusers, sched_cfg["_class_name"]).from_config(sched_cfg)
    kw: dict = {}
    z = x0
    if kind == "ddpm":
        net = diffusers.UNet2DModel.from_pretrained(d / "unet")
    else:
        vae = diffusers.AutoencoderKL.from_pretrained(d / "vae")
        with torch.no_grad():
            z = vae.encode(x0).latent_dist.mean * vae.config.scaling_factor
        if kind == "sd":
            from transformers import AutoTokenizer, CLIPTextModel

            net = diffusers.UNet2DConditionModel.from_pretrained(d / "unet")
            pipe = diffusers.StableDiffusionPipeline(
                vae=vae, text_encoder=CLIPTextModel.from_pretrained(d / "text_encoder"), tokenizer=AutoTokenizer.from_pretrained(d / "tokenizer"),
                unet=net, scheduler=sched, safety_checker=None, feature_extractor=None, requires_safety_checker=False,
            )  # fmt: skip
            with torch.no_grad():
                emb, _ = pipe.encode_prompt("", torch.device("cpu"), 1, False)
            kw["encoder_hidden_states"] = emb.expand(len(x0), -1, -1)
        else:
            net = diffusers.DiTTransformer2DModel.from_pretrained(d / "transformer")
            kw["class_labels"] = torch.full((len(x0),), net.config.num_embeds_ada_norm)  # the null class
    eps = diffprobe.noise_like(z, ids, t, 0)
    tt = torch.full((len(x0),), t)
    x_t = sched.add_noise(z, eps, tt)
    got: dict[str, torch.Tensor] = {}
    for p in paths:
        net.get_submodule(p).register_forward_hook(lambda m, a, o, p=p: got.__setitem__(p, o[0] if isinstance(o, tuple) else getattr(o, "sample", o)))
    with torch.no_grad():
        net(x_t, tt, **kw)
    if kind == "dit":  # tokens (N, T, D), row-major patches → (N, D, h, w)
        side = z.shape[-1] // net.config.patch_size
        got = {p: v.transpose(1, 2).reshape(v.shape[0], v.shape[2], side, side) for p, v in got.items()}
    return got


@pytest.mark.parametrize("kind", ["ddpm", "sd", "dit"])
def test_extracted_features_equal_the_models_own_forward(kind, dirs, data, tmp_path):
    spec = diffprobe.model_spec("diffusers", checkpoint=dirs[kind])
    n = len(spec.blocks)
    out = tmp_path / "s.zarr"
    extract_cli(data, dirs[kind], out, "--t", str(T), "--blocks", f"1-{n}", "--pool", "full", "--dtype", "float32",
                "--precision", "fp32", "--splits", "val")  # fmt: skip
    with diffprobe.open_store(out) as s:
        ids = [str(i) for i in s.ids("val")]
        x0 = torch.from_numpy(np.stack([load_image(p, tiny.IMAGE) for p in s.paths("val")]))
        ref = own_forward(kind, dirs[kind], x0, ids, T, [b.path for b in spec.blocks])
        for b in spec.blocks:
            stored = torch.from_numpy(s.read("val", T, b.number, None))
            want = ref[b.path]
            assert stored.shape == want.shape == (10, b.channels, b.height, b.width)
            torch.testing.assert_close(stored, want, rtol=1e-5, atol=1e-5 * float(want.abs().max()), msg=f"{kind} block {b.number} {b.path}")


def test_block_tables_number_units_like_adm(dirs):
    ddpm = diffprobe.model_spec("diffusers", checkpoint=dirs["ddpm"])
    assert [b.path for b in ddpm.blocks] == [
        "conv_in", "down_blocks.0.resnets.0", "down_blocks.0.downsamplers.0", "down_blocks.1.attentions.0", "mid_block",
        "up_blocks.0.attentions.0", "up_blocks.0.upsamplers.0", "up_blocks.1.resnets.0", "up_blocks.1.resnets.1",
    ]  # fmt: skip
    assert [b.stage for b in ddpm.blocks].count("middle") == 1 and ddpm.noise_shape == (3, 32, 32)
    sd = diffprobe.model_spec("diffusers", checkpoint=dirs["sd"])
    assert sd.image_size == 32 and sd.noise_shape == (4, 16, 16) and sd.blocks[0].path == "conv_in"
    dit = diffprobe.model_spec("diffusers", checkpoint=dirs["dit"])
    assert [(b.path, b.channels, b.height) for b in dit.blocks] == [(f"transformer_blocks.{i}", 16, 8) for i in range(3)]


def test_published_layouts_need_no_download():
    r = CliRunner().invoke(main, ["blocks", "sd-2.1-base"])
    assert r.exit_code == 0, r.output
    assert "25 blocks (512×512 input, noised as 4×64×64 latents" in r.output
    assert "   19  up_blocks.1.upsamplers.0" in r.output  # DIFT's up block 1
    r = CliRunner().invoke(main, ["blocks", "dit-xl-2-256"])
    assert r.exit_code == 0 and "28 blocks" in r.output and "transformer_blocks.12" in r.output and "1152  16×16" in r.output, r.output
    r = CliRunner().invoke(main, ["blocks", "ddpm-cifar10-32", "--json"])
    assert r.exit_code == 0 and '"model_class": "UNet2DModel"' in r.output


@pytest.mark.parametrize("kind", ["ddpm", "sd", "dit"])
def test_early_exit_equals_the_full_forward_and_runs_nothing_after(kind, dirs):
    bb = diffprobe.load_backbone("diffusers", dirs[kind])
    last = {"ddpm": "conv_out", "sd": "conv_out", "dit": "proj_out_2"}[kind]
    calls = []
    bb.net.get_submodule(last).register_forward_hook(lambda *a: calls.append(1))
    x = torch.randn(2, *bb.noise_shape)
    k = len(bb.blocks) // 2
    with torch.no_grad():
        early = bb.features(x, 50, [k])[k]
        assert calls == []  # stopped after block k
        full = bb.run_blocks(x, 50, tuple(range(1, len(bb.blocks) + 1)))
        out = bb(x, 50)
    assert calls == [1] and out.shape[1] == (8 if kind == "dit" else bb.noise_shape[0])
    torch.testing.assert_close(early, full[k])


def test_identity_follows_the_weights_not_the_folder(dirs, data, tmp_path):
    from diffprobe.pipelines.extraction.plan import make_plan

    other = tiny.ddpm_dir(tmp_path / "other", seed=1)
    moved = Path(shutil.copytree(dirs["ddpm"], tmp_path / "moved"))
    cfg = lambda ck: extract_config(data, tmp_path / "x.zarr", model="diffusers", checkpoint=str(ck), blocks=(3,), pools=(1,), timesteps=(T,))
    cpu = torch.device("cpu")
    assert make_plan(cfg(dirs["ddpm"]), cpu).hash == make_plan(cfg(moved), cpu).hash
    assert make_plan(cfg(dirs["ddpm"]), cpu).hash != make_plan(cfg(other), cpu).hash
    diffprobe.extract_features(cfg(dirs["ddpm"]), progress=False)
    with pytest.raises(StoreError, match="checkpoint_sha256"):
        diffprobe.extract_features(cfg(other), progress=False)


def test_shards_and_resume_equal_one_run(dirs, data, tmp_path):
    one, parts = tmp_path / "one.zarr", tmp_path / "parts.zarr"
    common = ("--t", f"{T},300", "--blocks", "1,3", "--pool", "1,2", "--unit-size", "8")
    extract_cli(data, dirs["dit"], one, *common)
    extract_cli(data, dirs["dit"], parts, *common, "--splits", "val")  # an interrupted run: one split done
    for i in range(2):
        extract_cli(data, dirs["dit"], parts, *common, "--shard", f"{i}/2")
    assert CliRunner().invoke(main, ["store", "finalize", str(parts)]).exit_code == 0
    a, b = read_all(one), read_all(parts)
    assert sorted(a) == sorted(b) and all(np.array_equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_dask_workers_equal_one_process(dirs, data, tmp_path):
    one, dask = tmp_path / "one.zarr", tmp_path / "dask.zarr"
    common = ("--t", str(T), "--blocks", "4", "--pool", "2", "--splits", "val", "--unit-size", "8")
    extract_cli(data, dirs["sd"], one, *common)
    extract_cli(data, dirs["sd"], dask, *common, "--workers", "1")
    a, b = read_all(one), read_all(dask)
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_prompt_and_prompt_embedding(dirs, data, tmp_path):
    from diffprobe.extract.diffusers.layout import ModelDir
    from diffprobe.extract.diffusers.text import embed_prompt

    common = ("--t", str(T), "--blocks", "4", "--pool", "1", "--splits", "val", "--dtype", "float32")
    empty, cat, from_file = tmp_path / "empty.zarr", tmp_path / "cat.zarr", tmp_path / "file.zarr"
    extract_cli(data, dirs["sd"], empty, *common)
    extract_cli(data, dirs["sd"], cat, *common, "--prompt", "a cat")
    emb = tmp_path / "empty.pt"
    torch.save(embed_prompt(ModelDir.read(dirs["sd"]), "", torch.device("cpu"))[0], emb)  # (L, D)
    no_text = tiny.sd_dir(tmp_path / "no_text", text=False)  # the same weights, no text encoder
    with pytest.raises(CheckpointError, match="--prompt-embedding FILE"):
        diffprobe.extract_features(extract_config(data, tmp_path / "x.zarr", model="diffusers", checkpoint=str(no_text), blocks=(4,), timesteps=(T,)))
    extract_cli(data, no_text, from_file, *common, "--prompt-embedding", str(emb))
    a, b, c = (read_all(p)[("val", f"t{T:04d}_b04_p1")] for p in (empty, cat, from_file))
    assert not np.allclose(a, b)  # the prompt conditions the features
    np.testing.assert_allclose(a, c, rtol=1e-6, atol=1e-6)  # the file holds the empty prompt's embedding
    with diffprobe.open_store(cat) as s:
        assert s.attrs["identity"]["prompt"] == "a cat"
    with pytest.raises(ConfigError, match="not text-conditioned"):
        diffprobe.load_backbone("diffusers", dirs["ddpm"], prompt="a cat")


def test_dit_class_label_and_random_preset_weights(dirs):
    bb = diffprobe.load_backbone("diffusers", dirs["dit"], class_label=3)
    assert bb.label == 3
    assert diffprobe.load_backbone("diffusers", dirs["dit"]).label == 10  # the null class
    with pytest.raises(ConfigError, match=r"must be in \[0, 9\]"):
        diffprobe.load_backbone("diffusers", dirs["dit"], class_label=10)
    a, b = (diffprobe.load_backbone("ddpm-cifar10-32", random_weights=True) for _ in range(2))  # the published layout, seeded
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        fa, fb = a.features(x, 10, [13])[13], b.features(x, 10, [13])[13]
    assert fa.shape == (1, 256, 4, 4) and torch.equal(fa, fb)


def test_clear_errors_for_missing_weights_and_hub_names(dirs, tmp_path):
    with pytest.raises(CheckpointError, match=r"hf download stabilityai/stable-diffusion-2-1-base --local-dir stable-diffusion-2-1-base"):
        diffprobe.load_backbone("sd-2.1-base")
    with pytest.raises(CheckpointError, match=r"looks like a Hugging Face hub name.*hf download google/ddpm-cifar10-32"):
        diffprobe.load_backbone("diffusers", "google/ddpm-cifar10-32")
    with pytest.raises(CheckpointError, match="not a diffusers model directory"):
        diffprobe.load_backbone("diffusers", tmp_path)
    broken = Path(shutil.copytree(dirs["ddpm"], tmp_path / "broken"))
    for f in (broken / "unet").glob("diffusion_pytorch_model.*"):
        f.unlink()
    r = CliRunner().invoke(main, ["extract", str(tmp_path), "--model", "diffusers", "--checkpoint", str(broken), "--t", "1",
                                  "--blocks", "1", "--out", str(tmp_path / "y.zarr"), "--dry-run"])  # fmt: skip
    assert r.exit_code != 0 and "no weights in" in r.output and "Traceback" not in r.output, r.output


def test_downstream_probe_sweep_and_cka_against_an_adm_store(dirs, data, tmp_path):
    adm, dd = tmp_path / "adm.zarr", tmp_path / "ddpm.zarr"
    diffprobe.extract_features(extract_config(data, adm, timesteps=(T,), blocks=(10,), pools=(1,)), progress=False)
    extract_cli(data, dirs["ddpm"], dd, "--t", str(T), "--blocks", "5,8", "--pool", "1")
    r = CliRunner().invoke(main, ["cka", "stores", str(adm), str(dd), "--split", "val", "--out", str(tmp_path / "cka")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "cka" / "cka.csv").is_file() or any((tmp_path / "cka").iterdir())
    r = CliRunner().invoke(main, ["probe", "linear", str(dd), "--t", str(T), "--block", "5", "--pool", "1"])
    assert r.exit_code == 0 and "linear probe on t0100_b05_p1" in r.output and "top-1" in r.output, r.output
    r = CliRunner().invoke(main, ["sweep", str(dd), "--probe", "linear", "--out", str(tmp_path / "sweep")])
    assert r.exit_code == 0, r.output
