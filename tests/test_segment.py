"""Long lines (``nmt translate --split-sentences``): split into sentences and chunks that fit
the model, translated, joined into one line again; never truncated, N lines in = N out."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from nmt.artifacts.checkpoint import load_checkpoint, save_checkpoint
from nmt.cli.app import app
from nmt.inference.documents import DocumentOptions, DocumentTranslator
from nmt.inference.search import Hypothesis
from nmt.inference.segment import chunk, sentences, split_line
from nmt.inference.translator import Translator
from tests.conftest import tiny_config, tiny_model

runner = CliRunner()
SENTENCE = "Zwei junge Männer stehen am Strand."


def words_count(text: str) -> int:
    """A stand-in subword count: one per word, plus EOS."""
    return len(text.split()) + 1


def test_sentences_follow_the_language_rules() -> None:
    text = "Ein Hund rennt z.B. schnell. Dr. Müller liest ein Buch! Gut?"
    assert sentences(text, "de") == [
        ["Ein", "Hund", "rennt", "z.B.", "schnell."],
        ["Dr.", "Müller", "liest", "ein", "Buch!"],
        ["Gut?"],
    ]
    assert sentences(text, "xx") == sentences(text, "en")  # no rules: English ones
    assert sentences("   ", "de") == []


def test_chunks_fit_the_limit_at_word_boundaries() -> None:
    words = [f"w{i}" for i in range(23)]
    pieces = chunk(words, 6, words_count)
    assert [w for p in pieces for w in p] == words
    assert all(words_count(" ".join(p)) <= 6 for p in pieces)
    assert chunk(["x" * 50, "y"], 4, lambda t: len(t)) == [["x" * 50], ["y"]]  # no boundary left


@settings(max_examples=200, deadline=None)
@given(
    text=st.lists(
        st.sampled_from(["Ein", "Hund.", "Er", "rennt!", "z.B.", "ja?", "Dr."]), max_size=60
    ),
    limit=st.integers(2, 12),
)
def test_split_keeps_every_word_in_order_within_the_limit(text, limit) -> None:
    line = " ".join(text)
    pieces = split_line(line, "de", limit, words_count)
    assert [w for p in pieces for w in p] == line.split()
    assert all(words_count(" ".join(p)) <= limit for p in pieces)


class EchoTranslator:
    """A stand-in :class:`Translator`: "translates" a piece to its upper case and records
    the pieces it was given (what a model would have seen)."""

    def __init__(self, tok, limit: int) -> None:
        self.tok, self.max_src_len, self.chunk_lines, self.src_lang = tok, limit, 5, "de"
        self.model, self.seen = None, []

    def translate_chunk(self, lines: list[str], guides=None) -> list[list[Hypothesis]]:
        self.seen += lines
        return [
            [Hypothesis([len(self.seen) - len(lines) + i], 0.0, 0.0)] for i in range(len(lines))
        ]

    def detok(self, hyp: Hypothesis) -> str:
        return self.seen[hyp.tokens[0]].upper()


LINES = st.lists(
    st.lists(
        st.sampled_from(["Ein", "Hund", "rennt.", "Zwei", "Männer!", "", " "]), max_size=40
    ).map(" ".join),
    max_size=12,
)


@settings(max_examples=100, deadline=None)
@given(lines=LINES, mode=st.sampled_from(["auto", "on", "off"]), markup=st.booleans())
def test_n_lines_in_n_lines_out(tok, lines, mode, markup) -> None:
    echo = EchoTranslator(tok, 12)
    options = DocumentOptions("xml" if markup else "off", mode)
    outputs = list(DocumentTranslator(echo, options).translate(lines))
    assert len(outputs) == len(lines)
    for line, out in zip(lines, outputs):
        assert out.split() == line.upper().split()  # every word translated, in order, once
    if mode != "off":
        assert all(len(tok.encode_src([piece])[0]) <= 12 for piece in echo.seen)


@pytest.fixture(scope="module")
def small_ckpt(tmp_path_factory, tok) -> Path:
    """A tiny Transformer that takes at most 24 source subwords."""
    path = tmp_path_factory.mktemp("segment") / "m.safetensors"
    cfg = tiny_config("transformer", **{"model.transformer.max_positions": "24"})
    save_checkpoint(path, tiny_model("transformer", tok), tok, cfg)
    return path


def test_a_long_line_is_one_line_of_per_sentence_translations(
    small_ckpt: Path, tmp_path: Path, tok, caplog
) -> None:
    paragraph = " ".join([SENTENCE, "Ein Hund rennt im Park.", "Eine Frau liest."] * 4)
    assert len(tok.encode_src([paragraph])[0]) > 24
    src, out = tmp_path / "in.de", tmp_path / "out.en"
    src.write_text(f"Ein Hund.\n{paragraph}\n\n{SENTENCE}\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING):
        result = runner.invoke(app, ["translate", str(small_ckpt), "-i", str(src), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "split into sentences" in caplog.text
    outputs = out.read_text(encoding="utf-8").split("\n")[:-1]
    assert len(outputs) == 4 and outputs[2] == ""

    model, _, cfg, _ = load_checkpoint(small_ckpt)
    translator = Translator(model, tok, cfg.search)
    pieces = [" ".join(s) for s in sentences(paragraph, "de")]
    assert len(pieces) == 12
    hyps = translator.translate_chunk(pieces)  # the pieces are batched together, as in the run
    assert outputs[1] == " ".join(t for t in (translator.detok(h[0]) for h in hyps) if t)


def test_split_sentences_off_truncates_with_a_warning(small_ckpt: Path, tmp_path: Path, caplog):
    src = tmp_path / "in.de"
    src.write_text(" ".join([SENTENCE] * 6) + "\n", encoding="utf-8")
    args = ["translate", str(small_ckpt), "-i", str(src), "--split-sentences", "off"]
    with caplog.at_level(logging.WARNING):
        result = runner.invoke(app, args)
    assert result.exit_code == 0 and "truncated" in caplog.text
    bad = runner.invoke(
        app, ["translate", str(small_ckpt), "-i", str(src), "--split-sentences", "x"]
    )
    assert bad.exit_code == 2 and "--split-sentences must be auto, on or off" in bad.output


def test_markup_across_split_sentences_stays_on_its_words(tok) -> None:
    echo = EchoTranslator(tok, 8)  # no attention: tags go by relative position
    line = "<b>Ein Hund</b> rennt schnell. Zwei <i>Männer</i> lachen laut. Er <br/> {n} liest."
    (out,) = DocumentTranslator(echo, DocumentOptions("xml", "auto")).translate([line])
    assert len(echo.seen) >= 3  # split: each piece within 8 subwords
    expected = "<b>EIN HUND</b> RENNT SCHNELL. ZWEI <i>MÄNNER</i> LACHEN LAUT. ER <br/> {n} LIEST."
    assert out == expected
