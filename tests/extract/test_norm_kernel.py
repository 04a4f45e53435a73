"""group_norm_act: the torch kernel is byte-identical to ADM's modules; the Triton kernels (run by
Triton's interpreter on CPU) match a float64 computation of the same maths in both memory formats."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from diffprobe.errors import ConfigError
from diffprobe.extract.adm.kernels import NORM_KERNELS, group_norm_act
from diffprobe.extract.adm.kernels.group_norm_op import plan

ROOT = Path(__file__).parents[2]
NO_TRITON = "triton is optional (not installed here); the torch kernel is tested without it"


class GroupNorm32Like(nn.GroupNorm):
    """ADM's GroupNorm32 as the modules computed it before the kernels: float32, cast back."""

    def __init__(self, channels: int) -> None:
        super().__init__(32, channels)
        nn.init.normal_(self.weight, 1.0, 0.3)  # not the identity affine, so the parameters matter
        nn.init.normal_(self.bias, 0.0, 0.3)

    def forward(self, x: Tensor) -> Tensor:
        return F.group_norm(x.float(), self.num_groups, self.weight.float(), self.bias.float(), self.eps).to(x.dtype)


def same_bytes(a: Tensor, b: Tensor) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(a.contiguous().view(torch.uint8), b.contiguous().view(torch.uint8))


def inputs(shape: tuple[int, ...], dtype: torch.dtype, channels_last: bool = False, seed: int = 0) -> tuple[Tensor, Tensor, Tensor]:
    """x of ``shape`` (mean 2, std 3: the statistics must not lose the mean), and (N, C, 1, 1) scale
    and shift, as ResBlock makes them: one embedding cast to x's dtype, chunked (non-contiguous views)."""
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(shape, generator=g) * 3 + 2).to(dtype)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    e = (0.5 * torch.randn(shape[0], 2 * shape[1], generator=g)).to(dtype)[:, :, None, None]
    scale, shift = e.chunk(2, dim=1)
    return x, scale, shift


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("channels_last", [False, True])
def test_torch_kernel_is_byte_identical_to_the_modules(dtype, channels_last):
    gn = GroupNorm32Like(64)
    x, scale, shift = inputs((3, 64, 5, 5), dtype, channels_last)
    args = (gn.weight, gn.bias, 32, gn.eps)
    with torch.no_grad():
        assert same_bytes(group_norm_act(x, *args), nn.Sequential(gn, nn.SiLU())(x))  # in_layers
        assert same_bytes(group_norm_act(x, *args, silu=False), gn(x))
        resblock = nn.SiLU()(gn(x) * (1 + scale) + shift)  # ResBlock.forward with scale-shift norm
        assert same_bytes(group_norm_act(x, *args, scale, shift), resblock)
        assert same_bytes(group_norm_act(x, *args, scale.flatten(1), shift.flatten(1)), resblock)  # (N, C) form
        assert same_bytes(group_norm_act(x, *args, scale, shift, silu=False), gn(x) * (1 + scale) + shift)
        tokens = x.reshape(3, 64, 25)  # AttentionBlock: (N, C, T), no activation
        assert same_bytes(group_norm_act(tokens, *args, silu=False), gn(tokens))


def reference64(x: Tensor, weight: Tensor, bias: Tensor, groups: int, eps: float, scale=None, shift=None, silu=True) -> Tensor:
    """The maths in float64, from x's (and scale/shift's) exact values."""
    n, c = x.shape[:2]
    ones = [1] * (x.dim() - 2)
    v = x.double().reshape(n, groups, -1)
    h = ((v - v.mean(-1, keepdim=True)) / (v.var(-1, unbiased=False, keepdim=True) + eps).sqrt()).reshape(x.shape)
    h = h * weight.double().reshape(1, c, *ones) + bias.double().reshape(1, c, *ones)
    if scale is not None:
        h = h * (1 + scale.double().reshape(n, c, *ones)) + shift.double().reshape(n, c, *ones)
    return h * torch.sigmoid(h) if silu else h


def assert_matches(y: Tensor, ref: Tensor, dtype: torch.dtype) -> None:
    """fp32: ~1e-5 relative; half precisions: one rounding of the output (a bf16 ulp is 2⁻⁷ relative at most)."""
    tol = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1e-2}[dtype]
    assert y.dtype == dtype
    torch.testing.assert_close(y.double(), ref, rtol=tol, atol=tol * ref.abs().max().item())


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("channels_last", [False, True])
def test_triton_kernel_matches_float64(dtype, channels_last):
    pytest.importorskip("triton", reason=NO_TRITON)
    gn = GroupNorm32Like(64)
    x, scale, shift = inputs((3, 64, 5, 5), dtype, channels_last)
    y = group_norm_act(x, gn.weight, gn.bias, 32, gn.eps, scale, shift, kernel="triton")
    assert_matches(y, reference64(x, gn.weight, gn.bias, 32, gn.eps, scale, shift), dtype)
    assert y.stride() == x.stride()  # the memory format is kept
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    assert y.is_contiguous(memory_format=fmt)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_triton_kernel_on_tokens_without_activation(dtype):
    pytest.importorskip("triton", reason=NO_TRITON)
    gn = GroupNorm32Like(64)
    x = inputs((2, 64, 7), dtype)[0]
    y = group_norm_act(x, gn.weight, gn.bias, 32, gn.eps, silu=False, kernel="triton")
    assert_matches(y, reference64(x, gn.weight, gn.bias, 32, gn.eps, silu=False), dtype)
    assert y.stride() == x.stride()


@pytest.mark.parametrize("shape, channels_last", [((2, 64, 12, 12), True), ((1, 32, 40, 40), False)], ids=["channels-last", "nchw"])
def test_triton_statistics_over_many_tiles_and_programs(shape, channels_last):
    """A group spans several tiles: one program loops over them, or several programs split them."""
    pytest.importorskip("triton", reason=NO_TRITON)
    from diffprobe.extract.adm.kernels.group_norm_op import run

    gn = GroupNorm32Like(shape[1])
    x, scale, shift = inputs(shape, torch.float32, channels_last)
    ref = reference64(x, gn.weight, gn.bias, 32, gn.eps, scale, shift)
    s = shape[2] * shape[3]
    p_one, p_split = plan(shape[0], shape[1], s, channels_last, 1), plan(shape[0], shape[1], s, channels_last, 64)
    assert p_one.split == 1 and p_one.chunk > p_one.block_s and p_split.split > 1
    for programs in (1, 64):
        y = run(x, gn.weight, gn.bias, 32, gn.eps, scale.flatten(1), shift.flatten(1), True, programs=programs)
        assert_matches(y, ref, torch.float32)


def test_triton_kernel_on_strides_it_cannot_view():
    """x whose H and W cannot merge into one axis (a transposed view) is made contiguous first."""
    pytest.importorskip("triton", reason=NO_TRITON)
    gn = GroupNorm32Like(64)
    x = inputs((2, 64, 4, 6), torch.float32)[0].transpose(2, 3)
    y = group_norm_act(x, gn.weight, gn.bias, 32, gn.eps, kernel="triton")
    assert_matches(y, reference64(x, gn.weight, gn.bias, 32, gn.eps), torch.float32)


def test_plan_covers_the_spatial_axis():
    for n, c, s, cl, programs in [(1, 64, 1, False, 1), (3, 96, 25, True, 8), (128, 256, 65536, False, 528), (2, 1024, 64, True, 528)]:
        p = plan(n, c, s, cl, programs)
        assert p.chunk % p.block_s == 0 and (p.split - 1) * p.chunk < s <= p.split * p.chunk, p
        assert p.block_c * p.block_s <= 4096 and all(v & (v - 1) == 0 for v in (p.block_c, p.block_s)), p  # powers of 2


def test_custom_op_fake_and_schema():
    pytest.importorskip("triton", reason=NO_TRITON)
    from diffprobe.extract.adm.kernels.group_norm_op import group_norm_act_op

    x, scale, shift = inputs((2, 32, 3, 3), torch.float32, channels_last=True)
    w, b = torch.randn(32), torch.randn(32)
    result = torch.library.opcheck(group_norm_act_op, (x, w, b, 32, 1e-5, scale.flatten(1), shift.flatten(1), True))
    assert set(result.values()) == {"SUCCESS"}, result


def test_compile_traces_the_triton_op_without_a_graph_break():
    pytest.importorskip("triton", reason=NO_TRITON)
    x, scale, shift = inputs((2, 32, 3, 3), torch.float32)
    w, b = torch.randn(32), torch.randn(32)
    f = torch.compile(lambda x: group_norm_act(x, w, b, 32, 1e-5, scale, shift, kernel="triton") * 2, backend="aot_eager", fullgraph=True)
    torch.testing.assert_close(f(x), 2 * group_norm_act(x, w, b, 32, 1e-5, scale, shift))


def test_compile_of_the_torch_kernel_on_cpu():
    x, scale, shift = inputs((2, 32, 2, 2), torch.float32)
    w, b = torch.randn(32), torch.randn(32)
    f = torch.compile(lambda x: group_norm_act(x, w, b, 32, 1e-5, scale, shift), fullgraph=True)
    torch.testing.assert_close(f(x), group_norm_act(x, w, b, 32, 1e-5, scale, shift))


def test_unknown_kernel_lists_the_valid_ones():
    x = torch.randn(1, 32, 2, 2)
    with pytest.raises(ConfigError, match=r"unknown norm kernel 'cuda'; valid: torch, triton"):
        group_norm_act(x, torch.ones(32), torch.zeros(32), 32, 1e-5, kernel="cuda")
    assert NORM_KERNELS.names() == ["torch", "triton"]


def test_triton_missing_says_what_to_do(monkeypatch):
    if importlib.util.find_spec("triton") is not None:
        monkeypatch.setitem(sys.modules, "triton", None)  # `import triton` now raises ImportError
    with pytest.raises(ConfigError, match=r"needs the triton package.*install it.*kernel='torch'"):
        group_norm_act(torch.randn(1, 32, 2, 2), torch.ones(32), torch.zeros(32), 32, 1e-5, kernel="triton")


def test_bad_arguments_say_what_was_expected():
    x, w, b = torch.randn(2, 64, 2, 2), torch.ones(64), torch.zeros(64)
    with pytest.raises(ValueError, match="expected groups dividing the 64 channels, got 24"):
        group_norm_act(x, w, b, 24, 1e-5)
    with pytest.raises(ValueError, match="expected weight and bias of shape"):
        group_norm_act(x, w[:32], b, 32, 1e-5)
    with pytest.raises(ValueError, match="scale and shift together"):
        group_norm_act(x, w, b, 32, 1e-5, scale=torch.zeros(2, 64))
    with pytest.raises(ValueError, match=r"expected scale/shift of shape"):
        group_norm_act(x, w, b, 32, 1e-5, torch.zeros(2, 64, 2), torch.zeros(2, 64, 2))
    with pytest.raises(ConfigError, match="kernel 'triton' runs on cuda"):
        group_norm_act(x.to("meta"), w, b, 32, 1e-5, kernel="triton")


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("channels_last", [False, True])
def test_gpu_triton_kernel_matches_float64(dtype, channels_last):
    """Compiled: the statistics split over several programs (256 (item, channel block)s < 4 per SM)."""
    gn = GroupNorm32Like(256).cuda()
    x, scale, shift = (t.cuda() for t in inputs((4, 256, 64, 64), dtype, channels_last))
    y = group_norm_act(x, gn.weight, gn.bias, 32, gn.eps, scale, shift, kernel="triton")
    assert_matches(y, reference64(x, gn.weight, gn.bias, 32, gn.eps, scale, shift), dtype)
    assert y.stride() == x.stride()
    tokens = x.reshape(4, 256, -1)  # (N, C, T), channel-fastest when x is channels-last
    y = group_norm_act(tokens, gn.weight, gn.bias, 32, gn.eps, silu=False, kernel="triton")
    assert_matches(y, reference64(tokens, gn.weight, gn.bias, 32, gn.eps, silu=False), dtype)


@pytest.mark.gpu
def test_gpu_compile_traces_the_triton_op_into_an_inductor_graph():
    gn = GroupNorm32Like(128).cuda()
    x, scale, shift = (t.cuda() for t in inputs((2, 128, 16, 16), torch.bfloat16, channels_last=True))

    def f(x: Tensor) -> Tensor:
        return group_norm_act(x + 1, gn.weight, gn.bias, 32, gn.eps, scale, shift, kernel="triton") * 2

    with torch.no_grad():
        torch.testing.assert_close(torch.compile(f, fullgraph=True)(x), f(x))


@pytest.mark.slow
def test_norm_kernel_benchmark_runs(tmp_path):
    out_json = tmp_path / "results.jsonl"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "norm_kernel.py"), "--device", "cpu", "--small", "--iters", "2",
           "--warmup", "1", "--json", str(out_json)]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    out = r.stdout
    assert "GroupNorm(32) → ·(1 + scale) + shift → SiLU; batch 2, float32, NCHW" in out, out
    for shape in ("64×16×16", "128×8×8"):
        assert re.search(rf"^{shape}\s+eager\s+[\d.]+\s+[\d.]+\s+1\.00×\s+0\.00e\+00$", out, re.M), out
        assert re.search(rf"^{shape}\s+compile\s+[\d.]+\s+[\d.]+\s+[\d.]+×\s+[\d.e+-]+$", out, re.M), out
        assert re.search(rf"^{shape}\s+triton\s+—\s+needs CUDA", out, re.M), out
    line = json.loads(out_json.read_text())
    assert line["benchmark"] == "norm_kernel" and [r["unit"] for r in line["rows"]] == ["ms", "ms", "× eager", "ms", "× eager"] * 2
    assert [r["value"] is None for r in line["rows"]] == [False, False, False, True, True] * 2  # triton: not on CPU
