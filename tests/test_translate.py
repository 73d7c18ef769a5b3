"""File translation: one output line per input line, in order, whatever the lines hold."""

from __future__ import annotations

import torch

from nmt.config import SearchConfig
from nmt.inference.translator import Translator
from tests.conftest import FIXTURES, tiny_model


def _translator(tok, backbone: str = "transformer", **search) -> Translator:
    model = tiny_model(backbone, tok).eval()
    cfg = SearchConfig(**{"beam": 1, "max_len_a": 1.0, "max_len_b": 3, "batch_size": 32, **search})
    return Translator(model, tok, cfg, chunk_lines=300)


def test_thousand_lines_in_order(tok) -> None:
    base = (FIXTURES / "test.de").read_text(encoding="utf-8").splitlines()
    lines = [base[i % len(base)] if i % 7 else "" for i in range(1000)]
    tr = _translator(tok)
    out = tr.translate_lines(lines)
    assert len(out) == 1000
    # order: every line's output equals that line translated on its own
    for i in (1, 2, 3, 500, 998, 999):
        assert out[i] == tr.translate_lines([lines[i]])[0]
    assert all(out[i] == "" for i in range(0, 1000, 7))


def test_outputs_are_single_lines_and_odd_inputs_survive(tok) -> None:
    odd = [
        "",
        "   ",
        "\t",
        "Ein Hund\x00\x07 rennt",
        "🙂🙂 emoji",
        "שלום עולם",
        "a" * 3000,
        "line with\u2028separator",
        "Zwei Männer.",
    ]
    out = _translator(tok, beam=2).translate_lines(odd)
    assert len(out) == len(odd)
    assert all("\n" not in o and "\r" not in o for o in out)
    assert out[0] == out[1] == out[2] == ""


def test_length_sorting_does_not_change_results(tok) -> None:
    lines = (FIXTURES / "test.de").read_text(encoding="utf-8").splitlines()[:40]
    batched = _translator(tok, batch_size=16).translate_lines(lines)
    single = [_translator(tok, batch_size=1).translate_lines([line])[0] for line in lines[:8]]
    assert batched[:8] == single


def test_bf16_translation_runs(tok) -> None:
    tr = _translator(tok)
    tr.precision = "bf16"
    out = tr.translate_lines(["Ein Hund rennt.", "Zwei Männer."])
    assert len(out) == 2 and torch.get_default_dtype() == torch.float32
