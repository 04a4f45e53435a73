"""Rectified-flow noising against diffusers' FlowMatchEulerDiscreteScheduler; early exit, DifFeed's
additions and bf16 weights of the new kinds on tiny pipelines; SD3 without its T5; the published
layouts of SDXL, SD3/3.5, Flux.1, SANA and PixArt measured without weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

pytest.importorskip("diffusers", reason="the optional extra is not installed: pip install 'diffprobe[diffusers]'")
pytest.importorskip("transformers", reason="the optional extra is not installed: pip install 'diffprobe[diffusers]'")
pytest.importorskip("tokenizers", reason="the tiny T5 and Gemma tokenizers are built with tokenizers")

import diffusers  # noqa: E402
from diffusers.pipelines.flux.pipeline_flux import calculate_shift  # noqa: E402

import diffprobe  # noqa: E402
from diffprobe.cli import main  # noqa: E402
from diffprobe.errors import ConfigError  # noqa: E402
from diffprobe.extract.diffusers.schedules import flow_fields, make_process  # noqa: E402
from tests.extract.diffusers import tiny2024  # noqa: E402

DYNAMIC = {
    "shift": 3.0,
    "use_dynamic_shifting": True,
    "base_shift": 0.5,
    "max_shift": 1.15,
    "base_image_seq_len": 256,
    "max_image_seq_len": 4096,
}
LAST = {"sdxl": "conv_out", "sd3": "proj_out", "flux": "proj_out", "sana": "proj_out", "pixart": "proj_out"}


@pytest.mark.parametrize("config,tokens", [({"shift": 3.0}, 4096), ({"shift": 1.0}, 64), (DYNAMIC, 4096), (DYNAMIC, 64),
                                           ({**DYNAMIC, "time_shift_type": "linear"}, 1024)])  # fmt: skip
def test_rectified_flow_noising_equals_the_schedulers_scale_noise(config, tokens):
    sched = diffusers.FlowMatchEulerDiscreteScheduler(**config)
    process = make_process(flow_fields(dict(sched.config), "test"), tokens)
    if config.get("use_dynamic_shifting"):  # as Flux's pipeline sets it for an image of `tokens` tokens
        mu = calculate_shift(tokens, config["base_image_seq_len"], config["max_image_seq_len"], config["base_shift"], config["max_shift"])
        sched.set_timesteps(sigmas=np.arange(1000, 0, -1) / 1000, mu=mu)
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(3, 16, 8, 8, generator=g), torch.randn(3, 16, 8, 8, generator=g)
    for t in (1, 250, 500, 999):
        ts = sched.timesteps[1000 - t : 1001 - t].expand(3)  # u = t/1000 sits at index 1000 - t
        want = sched.scale_noise(x0, ts, eps)
        torch.testing.assert_close(diffprobe.q_sample(x0, t, eps, process), want, rtol=1e-6, atol=1e-6, msg=f"t={t}")
    assert torch.equal(diffprobe.q_sample(x0, 0, eps, process), x0)  # σ(0) = 0: the clean latents
    assert process.sigmas[500] == pytest.approx(process.shift * 0.5 / (1 + (process.shift - 1) * 0.5))


@pytest.fixture(scope="module")
def dirs(pipelines_2024) -> dict[str, Path]:
    return pipelines_2024


@pytest.mark.parametrize("kind", sorted(tiny2024.BUILDERS))
def test_early_exit_equals_the_full_forward_and_runs_nothing_after(kind, dirs):
    bb = diffprobe.load_backbone("diffusers", dirs[kind])
    calls = []
    bb.net.get_submodule(LAST[kind]).register_forward_hook(lambda *a: calls.append(1))
    x = torch.randn(2, *bb.noise_shape, generator=torch.Generator().manual_seed(1))
    n = len(bb.blocks)
    with torch.no_grad():
        early = bb.features(x, 500, [1])[1]
        assert calls == []  # stopped after block 1
        full = bb.run_blocks(x, 500, tuple(range(1, n + 1)))
        out = bb(x, 500)
        delta = torch.randn_like(full[1])
        added = bb.run_blocks(x, 500, (1, 2), add={1: delta})  # DifFeed's feedback into the image stream
    assert calls == [1] and out.shape[0] == 2 and out.shape[2:] == x.shape[2:]
    torch.testing.assert_close(early, full[1])
    torch.testing.assert_close(added[1], full[1] + delta)
    assert not torch.allclose(added[2], full[2])
    assert bb.vae.decoder is None  # only the encoder is kept


def test_bf16_weights_when_asked(dirs):
    bb = diffprobe.load_backbone("diffusers", dirs["sd3"], weights="bfloat16")
    ref = diffprobe.load_backbone("diffusers", dirs["sd3"])
    assert bb.net.dtype == bb.vae.dtype == torch.bfloat16 and ref.net.dtype == torch.float32
    assert bb.spec.identity["weights_dtype"] == "bfloat16" and "weights_dtype" not in ref.spec.identity
    x = torch.randn(2, *bb.noise_shape, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        a, b = bb.features(x, 300, [2])[2].float(), ref.features(x, 300, [2])[2]
    assert torch.isfinite(a).all() and (a - b).abs().max() < 0.1 * b.abs().max()
    with pytest.raises(ConfigError, match="unknown weights dtype 'bf16'.*bfloat16"):
        diffprobe.model_spec("diffusers", {"weights": "bf16"}, checkpoint=dirs["sd3"])


def test_sd3_without_its_t5_uses_zeros_as_its_pipeline_does(tmp_path):
    from diffprobe.extract.diffusers.layout import ModelDir
    from diffprobe.extract.diffusers.runner import runner
    from diffprobe.extract.spec import Conditioning
    from tests.extract.diffusers.test_models_2024 import null_reference, pipeline

    d = tiny2024.sd3_dir(tmp_path / "sd3", t5_encoder=False)
    spec = diffprobe.model_spec("diffusers", checkpoint=d)
    got = runner("sd3").prepare(spec.config, ModelDir.read(d), Conditioning(), torch.device("cpu"))
    want = null_reference("sd3", pipeline("sd3", d))
    torch.testing.assert_close(got.states, want["states"], rtol=1e-6, atol=1e-6)
    assert got.states.shape[1] == 12 + 256 and not got.states[:, 12:].any()


def test_flags_of_the_text_condition(dirs):
    spec = diffprobe.model_spec("diffusers", {"guidance": 2.0, "max_tokens": 64}, checkpoint=dirs["flux"])
    assert spec.config.text_dict() == {"null": "empty", "max_tokens": 64, "guidance": 2.0}
    with pytest.raises(ConfigError, match="guidance applies to guidance-distilled"):
        diffprobe.model_spec("diffusers", {"guidance": 2.0}, checkpoint=dirs["sd3"])
    with pytest.raises(ConfigError, match="apply to the text-conditioned"):
        diffprobe.model_spec("ddpm-cifar10-32", {"null": "zeros"})
    with pytest.raises(ConfigError, match="--prompt-embedding applies to Stable Diffusion 1.x/2.x"):
        diffprobe.load_backbone("diffusers", dirs["pixart"], prompt_embedding="x.pt")


#: preset → (blocks, first block (path, channels, side), last block path, shift (None: DDPM))
PRESETS = {
    "sdxl-base-1.0": (19, ("conv_in", 320, 128), "up_blocks.2.resnets.2", None),
    "sd3-medium": (24, ("transformer_blocks.0", 1536, 64), "transformer_blocks.23", 3.0),
    "sd3.5-medium": (24, ("transformer_blocks.0", 1536, 64), "transformer_blocks.23", 3.0),
    "sd3.5-large": (38, ("transformer_blocks.0", 2432, 64), "transformer_blocks.37", 3.0),
    "flux.1-dev": (57, ("transformer_blocks.0", 3072, 64), "single_transformer_blocks.37", float(np.exp(1.15))),
    "flux.1-schnell": (57, ("transformer_blocks.0", 3072, 64), "single_transformer_blocks.37", 1.0),
    "sana-1600m-1024": (20, ("transformer_blocks.0", 2240, 32), "transformer_blocks.19", 3.0),
    "pixart-alpha-1024": (28, ("transformer_blocks.0", 1152, 64), "transformer_blocks.27", None),
    "pixart-sigma-1024": (28, ("transformer_blocks.0", 1152, 64), "transformer_blocks.27", None),
}


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_published_layouts_list_their_blocks_without_weights(name):
    n, (path, channels, side), last, shift = PRESETS[name]
    spec = diffprobe.model_spec(name)
    assert spec.image_size == 1024 and len(spec.blocks) == n and spec.blocks[-1].path == last
    b = spec.blocks[0]
    assert (b.path, b.channels, b.height, b.width) == (path, channels, side, side)
    assert spec.identity.get("shift") == (pytest.approx(shift) if shift else None)


def test_blocks_command_says_what_t_means_for_flow():
    r = CliRunner().invoke(main, ["blocks", "flux.1-dev"])
    assert r.exit_code == 0, r.output
    assert "57 blocks (1024×1024 input, noised as 16×128×128 latents; t in 0..999 = σ·1000 (rectified flow, shift 3.158)" in r.output
    assert "   20  single_transformer_blocks.0" in r.output and "3072  64×64" in r.output
