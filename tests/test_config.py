"""Typed configs: strict keys, type and range checks, dotted overrides."""

from __future__ import annotations

import pytest

from nmt.config import ConfigError, from_dict, load_config, save_config
from tests.conftest import BACKBONES, REPO


@pytest.mark.parametrize("name", BACKBONES)
def test_shipped_configs_load(name: str) -> None:
    cfg = load_config(REPO / "configs" / f"{name}.yaml")
    assert cfg.model.type == name
    assert load_config(REPO / "configs" / "tiny" / f"{name}.yaml").model.type == name


def test_unknown_key_is_named_with_suggestion() -> None:
    with pytest.raises(ConfigError, match=r"unknown config key 'train\.bach_tokens'.*batch_tokens"):
        from_dict({"train": {"bach_tokens": 10}})


def test_unknown_section() -> None:
    with pytest.raises(ConfigError, match="unknown config key 'trian'.*'train'"):
        from_dict({"trian": {}})


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"train": {"lr": "fast"}}, "train.lr: expected float"),
        ({"train": {"batch_tokens": 1.5}}, "train.batch_tokens: expected int"),
        ({"train": {"batch_tokens": -3}}, "train.batch_tokens must be positive"),
        ({"search": {"beam": 0}}, "search.beam must be positive"),
        ({"model": {"type": "gpt"}}, "model.type: 'gpt' is not one of"),
        ({"train": {"label_smoothing": 1.5}}, r"train.label_smoothing must be in \[0, 1\)"),
        ({"train": {"betas": [0.9]}}, "train.betas: expected a list of 2 values"),
        ({"model": {"transformer": {"d_model": 30, "heads": 4}}}, "must divide by heads"),
    ],
)
def test_bad_values_are_refused(raw: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        from_dict(raw)


def test_overrides_and_round_trip(tmp_path) -> None:
    cfg = load_config(
        REPO / "configs" / "transformer.yaml",
        ["train.lr=0.002", "model.transformer.heads=8", "data.src_lang=en"],
    )
    assert cfg.train.lr == 0.002 and cfg.model.transformer.heads == 8 and cfg.data.src_lang == "en"
    save_config(cfg, tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml") == cfg


def test_override_of_unknown_key_fails() -> None:
    with pytest.raises(ConfigError, match="model.transformer.layers"):
        load_config(REPO / "configs" / "transformer.yaml", ["model.transformer.layers=2"])


def test_yaml_11_booleans_stay_strings_where_the_key_is_a_string(tmp_path) -> None:
    """`no` is Norwegian, not False; numbers keep their text where a string is expected."""
    cfg = load_config(
        REPO / "configs" / "transformer.yaml",
        ["data.src_lang=no", "data.tgt_lang=on", "data.test=2016", "data.valid=1.10"],
    )
    assert (cfg.data.src_lang, cfg.data.tgt_lang) == ("no", "on")
    assert (cfg.data.test, cfg.data.valid) == ("2016", "1.10")
    path = tmp_path / "no.yaml"
    path.write_text(
        "data: {src_lang: no, tgt_lang: yes, test: 2016, valid: 1.10}\n"
        "tokenizer: {joint: yes}\nmodel: {transformer: {tie_embeddings: off}}\n",
        encoding="utf-8",
    )
    cfg = load_config(path)
    assert (cfg.data.src_lang, cfg.data.tgt_lang, cfg.data.test) == ("no", "yes", "2016")
    assert cfg.data.valid == "1.10"
    # where the key is a boolean, yes/no/on/off still mean true/false
    assert cfg.tokenizer.joint is True and cfg.model.transformer.tie_embeddings is False
    save_config(cfg, tmp_path / "saved.yaml")
    assert load_config(tmp_path / "saved.yaml") == cfg


def test_types_are_still_checked_after_yaml_12_parsing() -> None:
    with pytest.raises(ConfigError, match="tokenizer.joint: expected bool, got 'maybe'"):
        load_config(REPO / "configs" / "transformer.yaml", ["tokenizer.joint=maybe"])
    with pytest.raises(ConfigError, match="train.batch_tokens: expected int, got 1.5"):
        load_config(REPO / "configs" / "transformer.yaml", ["train.batch_tokens=1.5"])
    with pytest.raises(ConfigError, match=r"train.betas: expected a list of 2 values, got 0.9"):
        load_config(REPO / "configs" / "transformer.yaml", ["train.betas=0.9"])


def test_exponent_without_a_dot_is_a_float() -> None:
    from nmt.config import load_config
    from tests.conftest import REPO

    cfg = load_config(REPO / "configs" / "transformer.yaml", ["train.lr=5e-4"])
    assert cfg.train.lr == 0.0005
