"""Translation never loses, adds or merges lines, whatever the lines hold."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from nmt.artifacts.checkpoint import save_checkpoint
from nmt.cli.app import app
from nmt.config import SearchConfig
from nmt.inference.translator import Translator
from tests.conftest import tiny_config, tiny_model

# Any text without a line break: control characters, emoji, right-to-left scripts, spaces.
FIXTURE_CHECK = HealthCheck.function_scoped_fixture  # the module fixture is never mutated
LINE = st.text(st.characters(blacklist_characters="\n", blacklist_categories=("Cs",)), max_size=40)


@pytest.fixture(scope="module")
def translator(tok) -> Translator:
    search = SearchConfig(beam=1, max_len_a=0.5, max_len_b=3, batch_size=8)
    return Translator(tiny_model("transformer", tok).eval(), tok, search, chunk_lines=5)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(lines=st.lists(LINE, max_size=12))
def test_one_output_line_per_input_line(translator: Translator, lines: list[str]) -> None:
    out = translator.translate_lines(lines)
    assert len(out) == len(lines)
    assert all(not any(c in o for c in "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029") for o in out)
    for line, o in zip(lines, out):
        if not line.strip():
            assert o == ""


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(lines=st.lists(LINE, min_size=1, max_size=8), shift=st.integers(0, 7))
def test_output_follows_input_order(translator: Translator, lines: list[str], shift: int) -> None:
    """Rotating the input rotates the output the same way."""
    shift %= len(lines)
    rotated = lines[shift:] + lines[:shift]
    out = translator.translate_lines(lines)
    assert translator.translate_lines(rotated) == out[shift:] + out[:shift]


def test_long_lines_are_truncated_with_one_warning(tok, caplog) -> None:
    search = SearchConfig(beam=1, max_len_a=0.0, max_len_b=3, batch_size=4)
    tr = Translator(tiny_model("transformer", tok).eval(), tok, search, max_src_len=64)
    long_line = " ".join(["Hund"] * 10_000)
    with caplog.at_level(logging.WARNING, logger="nmt.inference.translator"):
        out = tr.translate_lines([long_line, "Ein Hund.", long_line])
    assert len(out) == 3
    assert sum("truncated" in r.getMessage() for r in caplog.records) == 1


def test_streaming_holds_only_one_chunk(translator: Translator) -> None:
    """A huge input is consumed chunk by chunk: reading never runs ahead of the output."""
    consumed = 0

    def source(n: int) -> Iterator[str]:
        nonlocal consumed
        for i in range(n):
            consumed += 1
            yield f"Ein Hund {i % 3}.\n"

    for produced, _ in enumerate(translator.translate_stream(source(1_000_000)), 1):
        assert consumed - produced <= translator.chunk_lines
        if produced == 23:
            break
    assert consumed < 40


def test_cli_keeps_line_count_with_odd_bytes(tmp_path: Path, tok) -> None:
    ckpt = tmp_path / "m.safetensors"
    save_checkpoint(ckpt, tiny_model("lstm", tok), tok, tiny_config("lstm"))
    src = tmp_path / "odd.de"
    src.write_bytes("Ein Hund.\r\n\r\n   \n\x00\x1b[31m\nשלום\n🙂\u2028x\nlast line".encode())
    result = CliRunner().invoke(app, ["translate", str(ckpt), "-i", str(src), "--beam", "2"])
    assert result.exit_code == 0, result.output
    assert len(result.stdout.split("\n")) - 1 == 7
