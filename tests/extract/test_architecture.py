"""Architecture details that the golden files do not pin: keys of every preset, attention orders."""

from __future__ import annotations

import pytest
import torch

import diffprobe
from diffprobe.extract.adm.diagnose import expected_shapes
from diffprobe.extract.adm.layers import AttentionBlock
from diffprobe.extract.registry import PRESETS
from tests.helpers import DATA


def test_256_uncond_keys_and_shapes_equal_official():
    rows = [ln.split("\t") for ln in (DATA / "adm256_uncond_state_dict_keys.tsv").read_text().splitlines() if not ln.startswith("#")]
    official = {k: tuple(int(x) for x in s.strip("[]").split(",")) for k, s in rows}
    ours = expected_shapes(PRESETS["adm-256-uncond"].config)
    assert list(ours) == list(official)  # same keys in the same order
    assert ours == official
    n_params = 0
    for s in ours.values():
        p = 1
        for d in s:
            p *= d
        n_params += p
    assert n_params == 552_814_086


def test_256_block_table_matches_paper():
    from diffprobe.extract.adm.family import measure_blocks

    blocks = measure_blocks(PRESETS["adm-256-uncond"].config)
    assert len(blocks) == 37
    assert blocks[18].path == "middle_block" and (blocks[18].channels, blocks[18].height) == (1024, 8)
    assert (blocks[23].channels, blocks[23].height, blocks[23].width) == (1024, 16, 16)
    assert (blocks[29].channels, blocks[29].height) == (512, 64)
    assert (blocks[32].channels, blocks[32].height) == (256, 128)


@pytest.mark.parametrize("name", sorted(n for n, p in PRESETS.items() if p.family == "adm"))
def test_every_adm_preset_builds_on_meta(name):
    shapes = expected_shapes(PRESETS[name].config)
    cfg = PRESETS[name].config
    assert ("label_emb.weight" in shapes) == cfg.class_cond
    assert shapes["out.2.weight"][0] == (6 if cfg.learn_sigma else 3)


def _naive_attention(block: AttentionBlock, x: torch.Tensor, legacy: bool) -> torch.Tensor:
    """Straightforward einsum attention, written independently of the SDPA path."""
    n, c, h, w = x.shape
    flat = x.reshape(n, c, -1)
    qkv = block.qkv(block.norm(flat))
    heads = block.num_heads
    d = c // heads
    if legacy:
        q, k, v = qkv.reshape(n * heads, 3 * d, -1).split(d, dim=1)
    else:
        q, k, v = (z.reshape(n * heads, d, -1) for z in qkv.chunk(3, dim=1))
    scale = d**-0.25
    wts = torch.softmax(torch.einsum("bct,bcs->bts", q * scale, k * scale), dim=-1)
    a = torch.einsum("bts,bcs->bct", wts, v).reshape(n, c, -1)
    return (flat + block.proj_out(a)).reshape(n, c, h, w)


@pytest.mark.parametrize("new_order", [False, True])
@pytest.mark.parametrize("heads_kw", [{"num_heads": 4}, {"num_head_channels": 16}])
def test_attention_matches_naive_formula(new_order, heads_kw):
    block = AttentionBlock(64, new_order=new_order, **heads_kw)
    x = torch.randn(2, 64, 5, 6)
    with torch.no_grad():
        torch.testing.assert_close(block(x), _naive_attention(block, x, legacy=not new_order), rtol=1e-5, atol=1e-5)


def test_new_attention_order_is_a_permutation_of_legacy():
    """Same weights re-laid out from (q,k,v per head) to (all q, all k, all v) give the same output."""
    legacy = AttentionBlock(64, num_heads=4, new_order=False)
    new = AttentionBlock(64, num_heads=4, new_order=True)
    new.load_state_dict(legacy.state_dict())
    d = 16
    perm = torch.tensor([h * 3 * d + part * d + i for part in range(3) for h in range(4) for i in range(d)])
    with torch.no_grad():
        new.qkv.weight.copy_(legacy.qkv.weight[perm])
        new.qkv.bias.copy_(legacy.qkv.bias[perm])
        x = torch.randn(2, 64, 4, 4)
        torch.testing.assert_close(new(x), legacy(x), rtol=1e-5, atol=1e-5)


def test_truncated_features_equal_full_forward(mini_backbone):
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    t = torch.tensor([10, 500])
    with torch.no_grad():
        _, full = mini_backbone.net.run(x, t, capture=range(1, 38))
        out_full = mini_backbone(x, t)
        for blocks in ([5], [19], [24, 7], ["output_blocks.4", "middle_block"], [37]):
            feats = mini_backbone.features(x, t, blocks)
            for n, f in feats.items():
                assert torch.equal(f, full[n])
        out, _ = mini_backbone.net.run(x, t, capture=(), stop_after=None)
        assert torch.equal(out, out_full)


def test_forward_stops_after_deepest_block(mini_backbone):
    """Nothing after the deepest requested block runs: later modules see no call."""
    calls: list[str] = []
    hooks = [
        mini_backbone.net.output_blocks[i].register_forward_hook(lambda m, a, o, i=i: calls.append(f"out{i}"))
        for i in range(len(mini_backbone.net.output_blocks))
    ]
    hooks.append(mini_backbone.net.out.register_forward_hook(lambda *a: calls.append("final")))
    try:
        with torch.no_grad():
            mini_backbone.features(torch.zeros(1, 3, 64, 64), 10, [24])
    finally:
        for h in hooks:
            h.remove()
    assert calls == ["out0", "out1", "out2", "out3", "out4"]  # block 24 = output_blocks.4


def test_features_keys_are_paper_numbers_in_request_order(mini_backbone):
    with torch.no_grad():
        feats = mini_backbone.features(torch.zeros(1, 3, 64, 64), 5, ["output_blocks.4", 3, "19"])
    assert list(feats) == [24, 3, 19]


def test_unknown_block_is_a_clear_error(mini_backbone):
    with pytest.raises(diffprobe.errors.BlockError, match="blocks 1..37"):
        mini_backbone.features(torch.zeros(1, 3, 64, 64), 5, [38])
    with pytest.raises(KeyError, match="module path"):
        mini_backbone.resolve_blocks(["decoder.4"])


def test_class_conditional_needs_a_fixed_label():
    flags = dict(image_size=32, num_channels=32, channel_mult="1,2", attention_resolutions="16", num_res_blocks=1, class_cond=True, num_classes=10)
    with pytest.raises(diffprobe.errors.ConfigError, match="class_label"):  # refused before anything is built
        diffprobe.load_backbone("adm", random_weights=True, **flags)
    x = torch.zeros(2, 3, 32, 32)
    bb7 = diffprobe.load_backbone("adm", random_weights=True, class_label=7, **flags)
    with torch.no_grad():
        ref = bb7.net(x, torch.tensor([5, 5]), torch.tensor([7, 7]))
        torch.testing.assert_close(bb7(x, 5), ref)
        assert not torch.allclose(bb7.net(x, torch.tensor([5, 5]), torch.tensor([6, 6])), ref)  # the label is used
    with pytest.raises(diffprobe.errors.ConfigError, match="not class-conditional"):
        diffprobe.load_backbone("adm-32-fmnist", class_label=3)


def _forward_shapes(cfg) -> list[tuple[int, int, int]]:
    """(C, H, W) of every block from a forward on the meta device: what the layers actually do."""
    from diffprobe.extract.adm.unet import ADMUNet

    with torch.device("meta"):
        net = ADMUNet(cfg)
        x = torch.empty(1, cfg.in_channels, cfg.image_size, cfg.image_size)
        t = torch.zeros(1, dtype=torch.long)
        y = torch.zeros(1, dtype=torch.long) if cfg.class_cond else None
    _, feats = net.run(x, t, y, capture=range(1, net.num_blocks + 1))
    return [tuple(feats[i].shape[1:]) for i in range(1, net.num_blocks + 1)]


VARIANTS = {"resblock_updown": {"resblock_updown": True}, "28px, 3 levels": {"image_size": 28, "channel_mult": (1, 2, 2)},
            "class_cond, 3 res blocks": {"class_cond": True, "num_classes": 10, "num_res_blocks": 3, "image_size": 32,
                                         "channel_mult": (1, 2, 2, 2)}}  # fmt: skip


@pytest.mark.parametrize("name", sorted(n for n, p in PRESETS.items() if p.family == "adm") + sorted(VARIANTS))
def test_the_block_table_is_what_a_forward_gives(name):
    """measure_blocks reads the builder's layout instead of running a forward (which costs every
    process a second of torch's meta-kernel start-up): it must equal the forward's shapes."""
    import dataclasses

    from diffprobe.extract.adm.config import ADMConfig
    from diffprobe.extract.adm.family import measure_blocks

    cfg = PRESETS[name].config if name in PRESETS else dataclasses.replace(ADMConfig(), **VARIANTS[name])
    blocks = measure_blocks(cfg)
    assert [(b.channels, b.height, b.width) for b in blocks] == _forward_shapes(cfg)
    assert [b.number for b in blocks] == list(range(1, len(blocks) + 1))


def test_an_image_size_the_levels_cannot_halve_is_a_clear_error():
    from diffprobe.errors import ConfigError
    from diffprobe.extract.adm.config import ADMConfig

    with pytest.raises(ConfigError, match=r"image_size=28 cannot go through 4 levels .*divisible by 8.*use image_size 24 or 32, or fewer levels"):
        ADMConfig(image_size=28, channel_mult=(1, 2, 2, 2))
    assert ADMConfig(image_size=24, channel_mult=(1, 2, 2, 2)).mult == (1, 2, 2, 2)
