"""SDXL, SD3, Flux.1, SANA and PixArt on tiny random pipelines saved to disk (no download), end to end
through ``diffprobe extract``: every stored block equals the model's own forward (hooked in diffusers'
model, fed by diffusers' own pipeline pieces: ``encode_prompt`` for the null condition, the
scheduler's ``scale_noise``/``add_noise`` for the noise, Flux's own packing); the null condition equals
``encode_prompt`` of the empty prompt; the store records process, shift, σ and condition."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

pytest.importorskip("diffusers", reason="the optional extra is not installed: pip install 'diffprobe[diffusers]'")
pytest.importorskip("transformers", reason="the optional extra is not installed: pip install 'diffprobe[diffusers]'")
pytest.importorskip("tokenizers", reason="the tiny T5 and Gemma tokenizers are built with tokenizers")

import diffusers  # noqa: E402

import diffprobe  # noqa: E402
from diffprobe.cli import main  # noqa: E402
from diffprobe.extract.sources.decode import load_image  # noqa: E402
from tests.extract.diffusers import tiny2024  # noqa: E402
from tests.helpers import make_manifest  # noqa: E402

KINDS = ("sdxl", "sd3", "flux", "sana", "pixart")
T = 500  # DDPM: step 500; rectified flow: σ = 0.5 before the shift
FLOW = {"sd3", "flux", "sana"}
STREAMS = {"sd3", "flux"}  # joint blocks return (text, image)


@pytest.fixture(scope="module")
def dirs(pipelines_2024) -> dict[str, Path]:
    return pipelines_2024


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_manifest(tmp_path_factory.mktemp("data") / "tiny.csv", per_class_train=1, per_class_val=1)


def extract_cli(data: Path, checkpoint: Path, out: Path, *args: str) -> None:
    argv = ["-q", "extract", str(data), "--model", "diffusers", "--checkpoint", str(checkpoint), "--out", str(out), "--device", "cpu",
            "--loader-workers", "0", "--no-progress", "--splits", "val", *args]  # fmt: skip
    r = CliRunner().invoke(main, argv)
    assert r.exit_code == 0, r.output


# -- the references: diffusers' own pipeline pieces -------------------------------------------------------
def pipeline(kind: str, d: Path) -> object:
    """The kind's diffusers pipeline, assembled from the directory's components."""
    import transformers

    def part(name: str) -> object | None:
        if not (d / name).is_dir():
            return None
        if name.startswith("tokenizer"):
            return transformers.AutoTokenizer.from_pretrained(d / name)
        if name.startswith("text_encoder"):
            arch = json.loads((d / name / "config.json").read_text())["architectures"][0]
            return getattr(transformers, arch).from_pretrained(d / name)
        if name == "scheduler":
            cfg = diffusers.DDPMScheduler.load_config(d / name)
            return getattr(diffusers, cfg["_class_name"]).from_config(cfg)
        cls = json.loads((d / name / "config.json").read_text())["_class_name"]
        return getattr(diffusers, cls).from_pretrained(d / name)

    cls = {"sdxl": diffusers.StableDiffusionXLPipeline, "sd3": diffusers.StableDiffusion3Pipeline, "flux": diffusers.FluxPipeline,
           "sana": diffusers.SanaPipeline, "pixart": diffusers.PixArtAlphaPipeline}[kind]  # fmt: skip
    names = (
        "unet",
        "transformer",
        "vae",
        "scheduler",
        "text_encoder",
        "tokenizer",
        "text_encoder_2",
        "tokenizer_2",
        "text_encoder_3",
        "tokenizer_3",
    )
    wanted = inspect.signature(cls.__init__).parameters
    return cls(**{n: part(n) for n in names if n in wanted})


def null_reference(kind: str, pipe, prompt: str = "") -> dict[str, torch.Tensor | None]:
    """The unconditional (or, with ``prompt``, the conditional) inputs as the pipeline computes them."""
    cpu = torch.device("cpu")
    with torch.no_grad():
        if kind == "sdxl":
            pe, ne, pp, npool = pipe.encode_prompt(prompt or "x", device=cpu, num_images_per_prompt=1, do_classifier_free_guidance=True)
            return {"states": pe if prompt else ne, "pooled": pp if prompt else npool, "mask": None}
        if kind == "sd3":
            pe, ne, pp, npool = pipe.encode_prompt(prompt, None, None, device=cpu, do_classifier_free_guidance=True)
            return {"states": pe if prompt else ne, "pooled": pp if prompt else npool, "mask": None}
        if kind == "flux":
            pe, pp, _ = pipe.encode_prompt(prompt, None, device=cpu)
            return {"states": pe, "pooled": pp, "mask": None}
        if kind == "sana":
            pe, pm, ne, nm = pipe.encode_prompt(
                prompt, do_classifier_free_guidance=True, negative_prompt="", device=cpu, complex_human_instruction=None
            )
            return {"states": ne, "pooled": None, "mask": nm}
        pe, pm, ne, nm = pipe.encode_prompt(prompt, do_classifier_free_guidance=True, negative_prompt="", device=cpu, clean_caption=False)
        return {"states": ne, "pooled": None, "mask": nm}


def flow_scheduler(kind: str, pipe, tokens: int):
    """FlowMatchEulerDiscreteScheduler with the model's σ(t), and the index of t in its table."""
    from diffusers.pipelines.flux.pipeline_flux import calculate_shift

    cfg = dict(pipe.scheduler.config)
    if kind == "sana":  # SANA ships DPM-Solver with flow σ; the same σ(t) is FlowMatchEuler's with shift = flow_shift
        return diffusers.FlowMatchEulerDiscreteScheduler(shift=cfg["flow_shift"])
    sched = diffusers.FlowMatchEulerDiscreteScheduler.from_config(cfg)
    if cfg.get("use_dynamic_shifting"):
        mu = calculate_shift(tokens, cfg["base_image_seq_len"], cfg["max_image_seq_len"], cfg["base_shift"], cfg["max_shift"])
        sched.set_timesteps(sigmas=np.arange(1000, 0, -1) / 1000, mu=mu)
    return sched


def own_forward(kind: str, d: Path, x0: torch.Tensor, ids: list[str], t: int, paths: list[str]) -> dict[str, torch.Tensor]:
    """{module path: (N, C, h, w)} from the model's full forward, hooked, fed as its pipeline feeds it."""
    pipe = pipeline(kind, d)
    net = pipe.unet if kind == "sdxl" else pipe.transformer
    vae = pipe.vae
    with torch.no_grad():
        out = vae.encode(x0)
        z = out.latent_dist.mean if hasattr(out, "latent_dist") else out.latent
        z = (z - (getattr(vae.config, "shift_factor", None) or 0.0)) * vae.config.scaling_factor
    n, c, h, w = z.shape
    eps = diffprobe.noise_like(z, ids, t, 0)
    cond = null_reference(kind, pipe)
    if kind in FLOW:
        sched = flow_scheduler(kind, pipe, (h // 2) * (w // 2))
        ts = sched.timesteps[1000 - t : 1001 - t]  # u = t/1000 sits at index 1000 - t of the descending table
        x_t = sched.scale_noise(z, ts, eps)
        ts = ts.expand(n)
    else:
        # the samplers (Euler, DPM-Solver) noise in their own σ parametrisation; DDPM's add_noise with the same β is q(x_t | x0)
        x_t = diffusers.DDPMScheduler.from_config(pipe.scheduler.config).add_noise(z, eps, torch.full((n,), t))
        ts = torch.full((n,), t)
    rep = lambda v: v.expand(n, *v.shape[1:])  # noqa: E731
    s = float(x0.shape[-1])
    if kind == "sdxl":
        time_ids = pipe._get_add_time_ids(
            (s, s), (0, 0), (s, s), dtype=torch.float32, text_encoder_projection_dim=pipe.text_encoder_2.config.projection_dim
        )
        kw = {"sample": x_t, "timestep": ts, "encoder_hidden_states": rep(cond["states"]),
              "added_cond_kwargs": {"text_embeds": rep(cond["pooled"]), "time_ids": rep(time_ids)}}  # fmt: skip
    elif kind == "sd3":
        kw = {"hidden_states": x_t, "timestep": ts, "encoder_hidden_states": rep(cond["states"]), "pooled_projections": rep(cond["pooled"])}
    elif kind == "flux":
        kw = {"hidden_states": pipe._pack_latents(x_t, n, c, h, w), "timestep": ts / 1000, "guidance": torch.full((n,), 3.5),
              "pooled_projections": rep(cond["pooled"]), "encoder_hidden_states": rep(cond["states"]),
              "txt_ids": torch.zeros(cond["states"].shape[1], 3), "img_ids": pipe._prepare_latent_image_ids(n, h // 2, w // 2, "cpu", torch.float32)}  # fmt: skip
    elif kind == "sana":
        kw = {"hidden_states": x_t, "timestep": ts * net.config.timestep_scale, "encoder_hidden_states": rep(cond["states"]),
              "encoder_attention_mask": rep(cond["mask"])}  # fmt: skip
    else:
        kw = {"hidden_states": x_t, "timestep": ts, "encoder_hidden_states": rep(cond["states"]), "encoder_attention_mask": rep(cond["mask"]),
              "added_cond_kwargs": {"resolution": torch.tensor([[s, s]]).repeat(n, 1), "aspect_ratio": torch.tensor([[1.0]]).repeat(n, 1)}}  # fmt: skip
    got: dict[str, torch.Tensor] = {}

    def grab(p: str):
        def hook(m, a, o):
            o = (o[1] if kind in STREAMS else o[0]) if isinstance(o, tuple) else getattr(o, "sample", o)
            got[p] = o

        return hook

    for p in paths:
        net.get_submodule(p).register_forward_hook(grab(p))
    with torch.no_grad():
        net(**kw)
    if kind != "sdxl":  # tokens (N, T, D), row-major over the latent's patch grid → (N, D, gh, gw)
        g = 1 if kind == "sana" else 2
        got = {p: v.transpose(1, 2).reshape(n, v.shape[2], h // g, w // g) for p, v in got.items()}
    return got


# -- the tests ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_extracted_blocks_equal_the_models_own_forward(kind, dirs, data, tmp_path):
    spec = diffprobe.model_spec("diffusers", checkpoint=dirs[kind])
    out = tmp_path / "s.zarr"
    extract_cli(data, dirs[kind], out, "--t", str(T), "--blocks", f"1-{len(spec.blocks)}", "--pool", "full", "--dtype", "float32",
                "--precision", "fp32")  # fmt: skip
    with diffprobe.open_store(out) as s:
        ids = [str(i) for i in s.ids("val")]
        x0 = torch.from_numpy(np.stack([load_image(p, tiny2024.IMAGE) for p in s.paths("val")]))
        ref = own_forward(kind, dirs[kind], x0, ids, T, [b.path for b in spec.blocks])
        for b in spec.blocks:
            stored = torch.from_numpy(s.read("val", T, b.number, None))
            want = ref[b.path]
            assert stored.shape == want.shape == (10, b.channels, b.height, b.width)
            torch.testing.assert_close(
                stored, want, rtol=1e-5, atol=1e-5 * float(want.abs().max()), msg=f"{kind} block {b.number} {b.path}"
            )
        ident = s.attrs["identity"]
    assert (
        ident["model_class"] == type(pipeline(kind, dirs[kind]).unet if kind == "sdxl" else pipeline(kind, dirs[kind]).transformer).__name__
    )
    assert ident["text_condition"]["null"] == ("zeros" if kind == "sdxl" else "empty") and ident["prompt"] == ""
    if kind in FLOW:
        assert ident["process"] == "rectified-flow" and len(ident["sigma_of_t"]) == 1000
        shift = ident["shift"]
        assert ident["sigma_of_t"][T] == pytest.approx(shift * 0.5 / (1 + (shift - 1) * 0.5))
    else:
        assert "process" not in ident  # DDPM identities are what they were


@pytest.mark.parametrize("kind", KINDS)
def test_null_condition_equals_the_pipelines_encode_prompt(kind, dirs):
    from diffprobe.extract.diffusers.layout import ModelDir
    from diffprobe.extract.diffusers.runner import runner
    from diffprobe.extract.spec import Conditioning

    spec = diffprobe.model_spec("diffusers", checkpoint=dirs[kind])
    got = runner(kind).prepare(spec.config, ModelDir.read(dirs[kind]), Conditioning(), torch.device("cpu"))
    want = null_reference(kind, pipeline(kind, dirs[kind]))
    torch.testing.assert_close(got.states, want["states"], rtol=1e-6, atol=1e-6)
    for name in ("pooled", "mask"):
        mine, theirs = getattr(got, name), want[name]
        assert (mine is None) == (theirs is None), name
        if theirs is not None:
            torch.testing.assert_close(mine.to(theirs.dtype), theirs, rtol=1e-6, atol=1e-6)
    if kind == "sdxl":
        assert not got.states.any()  # SDXL's null condition is zeros (force_zeros_for_empty_prompt)


@pytest.mark.parametrize("kind", ["sdxl", "sd3", "flux"])
def test_a_prompt_equals_the_pipelines_encode_prompt(kind, dirs):
    from diffprobe.extract.diffusers.layout import ModelDir
    from diffprobe.extract.diffusers.runner import runner
    from diffprobe.extract.spec import Conditioning

    spec = diffprobe.model_spec("diffusers", checkpoint=dirs[kind])
    got = runner(kind).prepare(spec.config, ModelDir.read(dirs[kind]), Conditioning(prompt="a cat"), torch.device("cpu"))
    want = null_reference(kind, pipeline(kind, dirs[kind]), "a cat")
    torch.testing.assert_close(got.states, want["states"], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(got.pooled, want["pooled"], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("kind", ["sd3", "flux"])
def test_dry_run_estimates_peak_memory_from_the_real_parts(kind, dirs, data, tmp_path):
    """--dry-run's weights are those the run loads: the denoiser's and VAE's parameters at their dtype,
    the text encoders' files (loaded once before extraction and freed)."""
    from diffprobe.extract.diffusers.layout import weight_files

    r = CliRunner().invoke(main, ["extract", str(data), "--model", "diffusers", "--checkpoint", str(dirs[kind]), "--out",
                                  str(tmp_path / "s.zarr"), "--device", "cpu", "--t", str(T), "--blocks", "2", "--dry-run"])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "peak memory (estimate): device" in r.output and "text encoders, loaded once before extraction" in r.output, r.output
    pipe = pipeline(kind, dirs[kind])
    summary = diffprobe.extract_features(diffprobe.ExtractConfig(data=str(data), out=str(tmp_path / "s.zarr"), model="diffusers",
                                                                 checkpoint=str(dirs[kind]), timesteps=(T,), blocks=(2,), device="cpu"),
                                         dry_run=True).plan["peak_memory"]  # fmt: skip
    params = lambda m: sum(t.numel() * t.element_size() for t in (*m.parameters(), *m.buffers()))
    assert summary["resident"] == {"denoiser": params(pipe.transformer), "vae": params(pipe.vae)}
    encoders = {p for p in ("text_encoder", "text_encoder_2", "text_encoder_3") if (dirs[kind] / p).is_dir()}
    assert set(summary["transient"]) == encoders
    for p in encoders:
        assert summary["transient"][p] == sum(f.stat().st_size for f in weight_files(dirs[kind] / p))
    assert summary["device_peak"] >= params(pipe.transformer) + params(pipe.vae) and summary["activations"] > 0
