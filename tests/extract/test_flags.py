"""Strict parsing of guided-diffusion flags."""

from __future__ import annotations

import json

import pytest

import diffprobe
from diffprobe.errors import ConfigError
from diffprobe.extract.adm.config import ADMConfig, apply_flags
from diffprobe.keyvalue import load_pairs, parse_pairs


def test_comma_lists_need_no_quoting():
    f = parse_pairs("image_size=64,channel_mult=1,2,2,attention_resolutions=32,16,8,learn_sigma=True")
    assert f == {"image_size": 64, "channel_mult": (1, 2, 2), "attention_resolutions": (32, 16, 8), "learn_sigma": True}
    cfg = apply_flags(ADMConfig(), f)
    assert cfg.channel_mult == (1.0, 2.0, 2.0) and cfg.attention_resolutions == (32, 16, 8) and cfg.learn_sigma


def test_guided_diffusion_dash_form_and_ignored_flags():
    f = parse_pairs("--image_size 64 --class_cond False --num_head_channels -1 --timestep_respacing 250")
    cfg = apply_flags(ADMConfig(class_cond=True), f)
    assert cfg.class_cond is False and cfg.num_head_channels is None and cfg.image_size == 64


@pytest.mark.parametrize("value, expected", [("False", False), ("false", False), ("0", False), ("True", True), ("1", True)])
def test_bools_parse_strictly(value, expected):
    assert apply_flags(ADMConfig(), {"learn_sigma": value}).learn_sigma is expected


@pytest.mark.parametrize(
    "flags, match",
    [
        ({"learn_sigma": "maybe"}, "expected True or False"),
        ({"image_size": "6.5"}, "expected an integer"),
        ({"num_chanels": "64"}, "unknown flag 'num_chanels'; valid flags: .*num_channels"),
        ({"noise_schedule": "sigmoid"}, "linear' or 'cosine"),
        ({"image_size": "48"}, "no default channel_mult for image_size=48"),
        ({"image_size": "32", "num_channels": "40", "channel_mult": "1,2"}, "levels of 40, 80 channels; ADM normalises with 32 groups"),
    ],
)
def test_bad_flags_are_clear_errors(flags, match):
    with pytest.raises(ConfigError, match=match):
        apply_flags(ADMConfig(), flags)


def test_flags_from_toml_and_json(tmp_path):
    (tmp_path / "f.toml").write_text('image_size = 32\nchannel_mult = "1,2,2"\nlearn_sigma = false\n')
    (tmp_path / "f.json").write_text(json.dumps({"image_size": 32, "channel_mult": [1, 2, 2], "learn_sigma": False}))
    a = apply_flags(ADMConfig(), load_pairs(tmp_path / "f.toml"))
    b = apply_flags(ADMConfig(), load_pairs(str(tmp_path / "f.json")))
    assert a == b and a.channel_mult == (1, 2, 2)
    with pytest.raises(ConfigError, match="not found"):
        load_pairs(tmp_path / "missing.toml")


def test_preset_flags_override_and_unknown_model():
    bb = diffprobe.load_backbone("adm-32-fmnist", random_weights=True, num_channels=32)
    assert bb.config.num_channels == 32 and bb.config.channel_mult == (1, 2, 2)
    with pytest.raises(ConfigError, match="unknown model .*valid: .*adm-256-uncond"):
        diffprobe.load_backbone("adm-1024")
