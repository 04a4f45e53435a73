"""name=value text: one comma rule for model flags and probe parameters alike."""

from __future__ import annotations

import json

import pytest

from diffprobe.errors import ConfigError
from diffprobe.keyvalue import format_value, load_pairs, parse_items, parse_pairs, scalar


@pytest.mark.parametrize(
    "text, expected",
    [
        ("64", 64), ("1e-2", 0.01), ("-1", -1), ("True", True), ("false", False), ("None", None), ("null", None),
        ("adamw", "adamw"), ("", ""), ('"7"', "7"), ("[1, 2]", "[1, 2]"),
    ],
)  # fmt: skip
def test_scalars_are_typed_once(text, expected):
    assert scalar(text) == expected and type(scalar(text)) is type(expected)


def test_a_comma_continues_a_value_unless_a_new_pair_follows():
    assert parse_pairs("image_size=64,channel_mult=1,2,2,learn_sigma=True") == {
        "image_size": 64, "channel_mult": (1, 2, 2), "learn_sigma": True,
    }  # fmt: skip
    assert parse_pairs("lr=0.01,0.1") == {"lr": (0.01, 0.1)}
    assert parse_items(["lr=0.01,0.1", "optimizer=adamw", "lr=0.5"]) == {"lr": 0.5, "optimizer": "adamw"}


def test_the_dashed_form_and_files_give_the_same_pairs(tmp_path):
    want = {"image_size": 32, "channel_mult": (1, 2, 2), "learn_sigma": False}
    assert parse_pairs("--image_size 32 --channel_mult 1,2,2 --learn_sigma False") == want
    (tmp_path / "f.json").write_text(json.dumps({"image_size": 32, "channel_mult": [1, 2, 2], "learn_sigma": False}))
    (tmp_path / "f.toml").write_text('image_size = 32\nchannel_mult = [1, 2, 2]\nlearn_sigma = false\n')
    assert load_pairs(tmp_path / "f.json") == load_pairs(str(tmp_path / "f.toml")) == want
    assert parse_pairs(",".join(f"{k}={format_value(v)}" for k, v in want.items())) == want


@pytest.mark.parametrize("text, match", [("64", "not name=value|expected flags"), ("=3", "empty name"), ("--a", "'--name value'")])
def test_bad_text_says_what_was_expected(text, match):
    with pytest.raises(ConfigError, match=match):
        parse_pairs(text, what="flags")


def test_a_missing_or_broken_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_pairs(tmp_path / "missing.toml")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ConfigError, match="cannot parse"):
        load_pairs(tmp_path / "bad.json")
    with pytest.raises(ConfigError, match="expected --param"):
        parse_items(["lr"])
