"""Glossaries and lexically constrained beam search (``nmt translate --glossary``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from nmt.artifacts.checkpoint import save_checkpoint
from nmt.cli.app import app
from nmt.config import SearchConfig
from nmt.data.batch import pad_sequences
from nmt.errors import UsageError
from nmt.inference.constraints import Progress, constrained_beam_search
from nmt.inference.ensemble import Ensemble
from nmt.inference.glossary import (
    Glossary,
    constraints_for,
    read_glossary,
    term_ids,
    word_continuations,
    words_of,
)
from nmt.inference.guide import Guide
from nmt.inference.search import SearchLimits
from nmt.inference.translator import Translator
from tests.conftest import BACKBONES, tiny_config, tiny_model

SENTENCES = ["Zwei junge Männer stehen am Strand.", "Ein Hund rennt.", "Eine Frau liest."]
TERMS = ["red dog", "beach", "woman", "playhouse", "blue shirt"]
runner = CliRunner()
FIXTURE_CHECK = HealthCheck.function_scoped_fixture


def contains(tokens: list[int], phrase: tuple[int, ...]) -> bool:
    n = len(phrase)
    return any(tuple(tokens[i : i + n]) == phrase for i in range(len(tokens) - n + 1))


def run(model, tok, guides, beam=3, nbest=1, a=0.5, b=3):
    ids = tok.encode_src(SENTENCES[: len(guides)])
    src = pad_sequences(ids, tok.pad_id)  # (B, S)
    limits = SearchLimits(tok.bos_id, tok.eos_id, a, b)
    model.eval()
    return constrained_beam_search(model, src, src != tok.pad_id, limits, guides, beam, nbest)


@pytest.mark.parametrize("backbone", BACKBONES)
def test_every_constraint_appears_in_every_hypothesis(backbone: str, tok) -> None:
    phrases = [term_ids(tok, t) for t in TERMS]
    guides = [Guide((), (phrases[0], phrases[1])), Guide((), (phrases[2],)), Guide()]
    results = run(tiny_model(backbone, tok), tok, guides, beam=3, nbest=3)
    for guide, hyps in zip(guides, results):
        assert 1 <= len(hyps) <= 3
        for h in hyps:
            assert tok.eos_id not in h.tokens
            assert all(contains(h.tokens, p) for p in guide.constraints)


def test_an_ensemble_honours_constraints_and_prefixes(tok) -> None:
    ensemble = Ensemble([tiny_model("attention", tok), tiny_model("transformer", tok, seed=1)])
    prefix = tuple(tok.encode_tgt(["Two men"])[0])
    guides = [Guide(prefix, (term_ids(tok, "beach"),)), Guide((), (term_ids(tok, "red dog"),))]
    for guide, hyps in zip(guides, run(ensemble, tok, guides, beam=2, nbest=2)):
        for h in hyps:
            assert tuple(h.tokens[: len(guide.prefix)]) == guide.prefix
            assert all(contains(h.tokens, p) for p in guide.constraints)


def test_a_length_bound_too_short_still_gets_every_constraint(tok) -> None:
    """At the length bound the missing constraints are appended (the last resort)."""
    phrases = tuple(term_ids(tok, t) for t in TERMS)
    [hyps] = run(tiny_model("lstm", tok), tok, [Guide((), phrases)], beam=1, a=0, b=1)
    assert all(contains(hyps[0].tokens, p) for p in phrases)


def test_progress_abandons_a_phrase_left_halfway() -> None:
    phrases = ((5, 6, 7), (8,))
    p = Progress.start(phrases).advance(5, phrases).advance(6, phrases)
    assert p.bank(phrases) == 2 and p.advancing(phrases) == {7}
    p = p.advance(9, phrases)  # off the phrase: back to nothing met
    assert p.bank(phrases) == 0 and p.advancing(phrases) == {5, 8}
    p = p.advance(8, phrases)
    assert p.met == (False, True) and p.missing(phrases) == [5, 6, 7]
    p = p.advance(5, phrases).advance(6, phrases).advance(7, phrases)
    assert p.complete() and p.bank(phrases) == 4


def test_a_completed_term_is_not_glued_to_the_next_piece(tok) -> None:
    phrases = ((term_ids(tok, "dog"),),)
    glue = word_continuations(tok)
    assert not glue[tok.tgt.piece_to_id("▁dog")] and not glue[tok.eos_id]
    assert glue[tok.tgt.piece_to_id("s")] and not glue[tok.tgt.piece_to_id(".")]
    p = Progress.start(phrases[0]).advance(phrases[0][0][0], phrases[0])
    assert p.ended and not p.advance(tok.eos_id, phrases[0]).ended


@settings(max_examples=12, deadline=None, suppress_health_check=[FIXTURE_CHECK])
@given(data=st.data())
def test_random_glossaries_always_appear_in_the_output(tok, data) -> None:
    """Terms drawn from the fixture vocabulary: each target term is in each output."""
    translator = _translator(tok)
    words = data.draw(
        st.lists(st.sampled_from(VOCAB_WORDS), min_size=1, max_size=3, unique=True), "targets"
    )
    sources = data.draw(
        st.lists(st.sampled_from(SOURCE_WORDS), min_size=len(words), max_size=len(words),
                 unique=True), "sources",
    )  # fmt: skip
    glossary = Glossary.from_pairs(zip(sources, words))
    line = " ".join(sources) + " und so weiter."
    guide = Guide((), constraints_for(glossary, line, tok))
    [hyps] = translator.translate_chunk([line], [guide])
    assert len(guide.constraints) == len(words)
    output_words = words_of(translator.detok(hyps[0]))
    for w in words:
        assert contains(hyps[0].tokens, term_ids(tok, w))
        assert contains(list(output_words), words_of(w))  # whole words: nothing glued on


VOCAB_WORDS = ["dog", "man", "woman", "beach", "red", "playhouse", "two men", "blue shirt"]
SOURCE_WORDS = ["Hund", "Mann", "Frau", "Strand", "rot", "Spielhaus", "Hemd", "Leiter"]


def _translator(tok) -> Translator:
    search = SearchConfig(beam=2, max_len_a=0.5, max_len_b=3, batch_size=4)
    return Translator(tiny_model("transformer", tok).eval(), tok, search)


# --- glossary files ------------------------------------------------------------------------------


def test_glossary_matching_is_longest_first_whole_word_and_case_sensitive() -> None:
    g = Glossary.from_pairs(
        [("Hund", "dog"), ("roter Hund", "red dog"), ("Frau", "woman"), ("am", "at the")]
    )
    assert g.match("Ein roter Hund und ein Hund.") == ["red dog", "dog"]
    assert g.match("Ein roter Hunde, ein (Hund)") == ["dog"]  # "Hunde" is not "Hund"
    assert g.match("frau Frauen Frau") == ["woman"]
    assert g.match("Hamburg am Meer") == ["at the"]


def test_term_ids_are_the_mid_sentence_pieces(tok) -> None:
    for term in ["dog", "red dog", "playhouse", "(x)"]:
        ids = term_ids(tok, term)
        sentence = tok.tgt.encode("A " + term)
        assert tuple(sentence[-len(ids) :]) == ids


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"Hund\tdog\nKatze\n", "g.tsv:2: expected 'source term<TAB>target term', found 1"),
        (b"Hund\tdog\tx\n", "g.tsv:1: expected 'source term<TAB>target term', found 3"),
        (b"Hund\tdog\n \tcat\n", "g.tsv:2: the source term is empty"),
        (b"Hund\t \n", "g.tsv:1: the target term is empty"),
        (b"Hund\tdog\n\xff\tcat\n", "g.tsv:2: not valid UTF-8"),
        (b"\n\n", "the glossary has no terms"),
    ],
)
def test_bad_glossary_files_are_one_line_errors(tmp_path: Path, content: bytes, problem) -> None:
    path = tmp_path / "g.tsv"
    path.write_bytes(content)
    with pytest.raises(UsageError, match=problem.replace("(", r"\(")) as e:
        read_glossary(path)
    assert "\n" not in str(e.value)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, tok) -> Path:
    path = tmp_path_factory.mktemp("constraints") / "model.safetensors"
    save_checkpoint(path, tiny_model("attention", tok), tok, tiny_config("attention"))
    return path


def test_cli_glossary_with_nbest(ckpt: Path, tmp_path: Path) -> None:
    src, gloss = tmp_path / "in.de", tmp_path / "g.tsv"
    src.write_text("Ein Hund rennt.\n\nZwei Frauen am Strand.\n", encoding="utf-8")
    gloss.write_text("Hund\tred dog\nStrand\tbeach\n", encoding="utf-8")
    args = ["translate", str(ckpt), "-i", str(src), "--glossary", str(gloss), "--beam", "3"]
    result = runner.invoke(app, [*args, "--nbest", "2"])
    assert result.exit_code == 0, result.output
    lines = [x for x in result.stdout.splitlines() if "|||" in x]
    assert [x.split(" ||| ")[0] for x in lines] == ["0", "0", "1", "2", "2"]
    assert all("red dog" in x for x in lines[:2]) and all("beach" in x for x in lines[3:])
    bad = tmp_path / "bad.tsv"
    bad.write_text("Hund\tdog\nKatze cat\n", encoding="utf-8")
    result = runner.invoke(app, [*args[:4], "--glossary", str(bad)])
    assert result.exit_code == 2 and "bad.tsv:2:" in result.output


def test_constrained_search_is_deterministic_and_batch_independent(tok) -> None:
    """A sentence's output does not depend on the other sentences of its batch."""
    model = tiny_model("transformer", tok)
    phrases = (term_ids(tok, "beach"),)
    together = run(model, tok, [Guide((), phrases), Guide(), Guide((), phrases)])
    alone = run(model, tok, [Guide((), phrases)])
    assert together[0][0].tokens == alone[0][0].tokens
    torch.testing.assert_close(together[0][0].log_prob, alone[0][0].log_prob)
