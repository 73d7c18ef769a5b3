"""Configs a user or an attacker controls: every one loads, or fails fast with one
ConfigError naming what is wrong (never a hang, a traceback or a huge allocation)."""

from __future__ import annotations

import contextlib
import tempfile
import time
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nmt.config import ConfigError, load_config
from nmt.config.load import MAX_YAML_DEPTH


def _laughs(levels: int) -> str:
    """A YAML "billion laughs": each level lists the previous one ten times."""
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, levels):
        refs = ", ".join([f"*a{i - 1}"] * 10)
        lines.append(f"a{i}: &a{i} [{refs}]")
    lines.append(f"data:\n  max_len: *a{levels - 1}")
    return "\n".join(lines) + "\n"


def _fails_fast(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text, encoding="utf-8")
    start = time.monotonic()
    with pytest.raises(ConfigError, match=expected):
        load_config(path)
    assert time.monotonic() - start < 5


def test_alias_bomb_is_refused_fast(tmp_path: Path) -> None:
    _fails_fast(tmp_path, _laughs(9), "more than .* values")


def test_deep_nesting_is_refused_fast(tmp_path: Path) -> None:
    _fails_fast(tmp_path, "data: " + "[" * 5000 + "]" * 5000 + "\n", "nested more than")
    _fails_fast(
        tmp_path, "data: " + "[" * (MAX_YAML_DEPTH + 2) + "]" * (MAX_YAML_DEPTH + 2), "nested"
    )


@pytest.mark.parametrize(
    "override, expected",
    [
        ("train.lr=.nan", "train.lr must be a finite number"),
        ("train.lr=.inf", "train.lr must be a finite number"),
        ("train.betas=[0.9, .nan]", "train.betas must be a finite number"),
        ("train.seed=99999999999999999999", "train.seed must be at most"),
        ("train.seed=-1", "train.seed must not be negative"),
        ("model.transformer.d_model=100000000", "model.transformer.d_model must be at most"),
        ("model.transformer.encoder_layers=1000000", "encoder_layers must be at most"),
        ("tokenizer.vocab_size=100000000", "tokenizer.vocab_size must be at most"),
    ],
)
def test_values_no_machine_can_use_are_config_errors(override: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        load_config(None, [override])


yaml_scalars = st.one_of(st.integers(), st.floats(), st.booleans(), st.text(max_size=8), st.none())
yaml_values = st.recursive(
    yaml_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=20,
)
SECTIONS = ["data", "tokenizer", "model", "train", "search", "bogus"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(SECTIONS), yaml_values, max_size=4))
def test_any_yaml_structure_loads_or_is_one_config_error(raw: dict) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "c.yaml"
        path.write_text(yaml.safe_dump(raw), encoding="utf-8")
        with contextlib.suppress(ConfigError):  # anything else fails the test
            load_config(path)


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from(["train.lr", "train.seed", "search.beam", "data.max_len", "model.type"]),
    st.text(max_size=30),
)
def test_any_set_value_loads_or_is_one_config_error(key: str, value: str) -> None:
    with contextlib.suppress(ConfigError):  # anything else fails the test
        load_config(None, [f"{key}={value}"])
