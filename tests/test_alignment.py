"""Word alignments from attention (``nmt translate --alignments``, nmt.inference.alignment)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from nmt.artifacts.checkpoint import save_checkpoint
from nmt.cli.app import app
from nmt.config import SearchConfig
from nmt.errors import UsageError
from nmt.inference.alignment import align_words, translate_aligned, word_index
from nmt.inference.ensemble import Ensemble
from nmt.inference.glossary import term_ids
from nmt.inference.guide import Guide
from nmt.inference.translator import Translator
from tests.conftest import tiny_config, tiny_model

SENTENCES = ["Zwei junge Männer stehen am Strand.", "Ein Hund rennt.", "", "Eine (rote) Frau."]
runner = CliRunner()


def test_pieces_map_to_whitespace_words() -> None:
    assert word_index(["▁Zwei", "▁jung", "e", "▁(", "x", ")"], 3) == [0, 1, 1, 2, 2, 2]
    assert word_index(["▁", "(", "x", ")", "▁y"], 2) == [0, 0, 0, 0, 1]
    assert word_index(["ab", "▁c"], 2) == [0, 1]  # a first piece without ▁ is word 0


def test_align_words_sums_pieces_and_takes_the_best_source_word() -> None:
    src_pieces = ["▁ein", "▁Hund", "e", "</s>"]
    tgt_pieces = ["▁a", "▁do", "g", "s"]
    attention = [
        [0.8, 0.1, 0.0, 0.1],  # ▁a -> ein
        [0.1, 0.3, 0.2, 0.4],  # ▁do: Hund+e = 0.5 > ein; the EOS column is ignored
        [0.5, 0.2, 0.2, 0.1],  # g: 0.5 ein vs 0.4 Hunde; the word sum decides
        [0.0, 0.5, 0.4, 0.1],
    ]
    assert align_words("ein Hunde", "a dogs", src_pieces, tgt_pieces, attention) == [
        (0, 0),
        (1, 1),
    ]
    assert align_words("", "a", [], ["▁a"], [[1.0]]) == []


@settings(max_examples=30, deadline=None)
@given(
    src_words=st.integers(1, 6),
    tgt_words=st.integers(1, 6),
    seed=st.integers(0, 10_000),
)
def test_links_are_within_range_and_one_per_target_word(src_words, tgt_words, seed) -> None:
    rng = random.Random(seed)
    src_pieces = [p for w in range(src_words) for p in ["▁w"] + ["x"] * rng.randint(0, 2)]
    tgt_pieces = [p for w in range(tgt_words) for p in ["▁v"] + ["y"] * rng.randint(0, 2)]
    attention = [[rng.random() for _ in src_pieces + ["</s>"]] for _ in tgt_pieces]
    src_text, tgt_text = " ".join(["w"] * src_words), " ".join(["v"] * tgt_words)
    links = align_words(src_text, tgt_text, src_pieces + ["</s>"], tgt_pieces, attention)
    assert [j for _, j in links] == list(range(tgt_words))
    assert all(0 <= i < src_words for i, _ in links)


@pytest.mark.parametrize("backbone", ["attention", "transformer", "ensemble"])
def test_translate_aligned_gives_valid_links(backbone: str, tok) -> None:
    if backbone == "ensemble":
        model = Ensemble([tiny_model("attention", tok), tiny_model("transformer", tok)])
    else:
        model = tiny_model(backbone, tok)
    search = SearchConfig(beam=2, nbest=2, max_len_a=0.5, max_len_b=3)
    translator = Translator(model.eval(), tok, search)
    guides = [Guide(), Guide((), (term_ids(tok, "dog"),)), Guide(), Guide()]
    for line, hyps in zip(SENTENCES, translate_aligned(translator, SENTENCES, guides)):
        assert 1 <= len(hyps) <= 2
        for a in hyps:
            if not line or not a.text:
                assert a.alignment == []
                continue
            assert [j for _, j in a.alignment] == list(range(len(a.text.split())))
            assert all(0 <= i < len(line.split()) for i, _ in a.alignment)


def test_lstm_is_refused(tok) -> None:
    translator = Translator(tiny_model("lstm", tok).eval(), tok, SearchConfig(beam=1))
    with pytest.raises(UsageError, match="no attention"):
        translate_aligned(translator, SENTENCES)


@pytest.mark.parametrize("backbone", ["lstm", "attention"])
def test_cli_alignments_column(backbone: str, tok, tmp_path: Path) -> None:
    ckpt = tmp_path / "m.safetensors"
    save_checkpoint(ckpt, tiny_model(backbone, tok), tok, tiny_config(backbone))
    src = tmp_path / "in.de"
    src.write_text("\n".join(SENTENCES) + "\n", encoding="utf-8")
    args = ["translate", str(ckpt), "-i", str(src), "--alignments", "--scores"]
    result = runner.invoke(app, args)
    if backbone == "lstm":
        assert result.exit_code == 2 and "no attention" in result.output
        assert len(result.output.strip().splitlines()) == 1
        return
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == len(SENTENCES)
    for line, source in zip(lines, SENTENCES):
        text, total, mean, links = line.split("\t")
        pairs = [tuple(map(int, p.split("-"))) for p in links.split()]
        assert [j for _, j in pairs] == list(range(len(text.split())))
        assert all(0 <= i < len(source.split()) for i, _ in pairs)
    result = runner.invoke(app, [*args, "--nbest", "2", "--beam", "2"])
    assert result.exit_code == 0, result.output
    assert all(len(x.split(" ||| ")) == 5 for x in result.stdout.splitlines())
