"""Guidance through the document layer: glossaries and prefixes with ``--markup`` and
sentence splitting, and the score and alignment columns of lines translated in pieces."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from nmt.artifacts.checkpoint import save_checkpoint
from nmt.cli.app import app
from nmt.inference.alignment import align_hypotheses
from nmt.inference.documents import DocumentOptions, DocumentTranslator
from nmt.inference.glossary import Glossary, term_ids, words_of
from nmt.inference.guide import NO_GUIDE
from nmt.inference.guided import (
    Guidance,
    GuidedLine,
    GuideOptions,
    line_scores,
    sentence_guides,
)
from nmt.inference.markup import parse
from nmt.inference.search import Hypothesis
from nmt.inference.segment import sentences
from nmt.inference.translator import Translator
from tests.conftest import BACKBONES, tiny_config, tiny_model
from tests.test_markup import marked_lines, xml_items

runner = CliRunner()
GLOSSARY = {"Hund": "red dog", "Strand": "beach", "Frau": "woman", "Park": "playhouse"}
PARAGRAPH = (
    "Ein Hund rennt im Park. Zwei junge Männer stehen am Strand. "
    "Eine Frau liest ein Buch. Ein Hund schläft."
)
MARKED = [
    "Ein <b>Hund</b> rennt im <i>Park</i>.",
    'Eine <a href="/x?a=1&amp;b=2">Frau</a> am Strand, {name}!',
    "",
    "Zwei <b>junge <i>Männer</i></b> stehen<br/> am Strand %s. Ein Hund schläft.",
]


def plain_words(output: str) -> tuple[str, ...]:
    """The words of an output line without its markup, as glossary matching sees them."""
    return words_of(parse(output, "xml").plain)


def holds(output: str, term: str) -> bool:
    words, wanted = plain_words(output), words_of(term)
    n = len(wanted)
    return any(words[i : i + n] == wanted for i in range(len(words) - n + 1))


def expected_terms(line: str) -> list[str]:
    return Glossary.from_pairs(GLOSSARY.items()).match(parse(line, "xml").plain)


def translator(backbone: str, tok, beam: int = 2) -> Translator:
    search = dataclasses.replace(tiny_config(backbone).search, beam=beam, max_len_a=0.5)
    return Translator(tiny_model(backbone, tok).eval(), tok, search)


def guided(t: Translator, documents: DocumentOptions, **guide) -> DocumentTranslator:
    glossary = Glossary.from_pairs(GLOSSARY.items())
    return DocumentTranslator(
        t, documents, guide=GuideOptions(**guide), guidance=Guidance(glossary)
    )


def recording(t: Translator) -> list[tuple[list[str], list]]:
    """Record what the search is given: each call's pieces and guides."""
    calls: list[tuple[list[str], list]] = []
    search = t.translate_chunk

    def translate_chunk(lines, guides=None):
        calls.append((list(lines), list(guides) if guides else [NO_GUIDE] * len(lines)))
        return search(lines, guides)

    t.translate_chunk = translate_chunk  # type: ignore[method-assign]
    return calls


# --- glossary and markup -------------------------------------------------------------------------


@pytest.mark.parametrize("backbone", BACKBONES)
def test_glossary_and_markup_keep_every_term_and_every_tag(tmp_path: Path, tok, backbone) -> None:
    ckpt, src, out = tmp_path / "m.safetensors", tmp_path / "in.de", tmp_path / "out.en"
    cfg = tiny_config(backbone, **{"search.max_len_a": "0.5", "search.max_len_b": "3"})
    save_checkpoint(ckpt, tiny_model(backbone, tok), tok, cfg)
    src.write_text("\n".join(MARKED) + "\n", encoding="utf-8")
    gloss = tmp_path / "g.tsv"
    gloss.write_text("".join(f"{s}\t{t}\n" for s, t in GLOSSARY.items()), encoding="utf-8")
    args = ["translate", str(ckpt), "-i", str(src), "-o", str(out), "--markup", "xml"]
    result = runner.invoke(app, [*args, "--glossary", str(gloss), "--scores"])
    assert result.exit_code == 0, result.output
    rows = [row.split("\t") for row in out.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == len(MARKED) and rows[2] == ["", "0.0000", "0.0000"]
    for line, (output, total, mean) in zip(MARKED, rows):
        assert xml_items(output) == xml_items(line), output  # well-formed, the same items
        assert all(holds(output, term) for term in expected_terms(line)), output
        assert math.isfinite(float(total)) and float(total) <= float(mean) <= 0


@pytest.fixture(scope="module")
def greedy(tok) -> Translator:
    return translator("transformer", tok, beam=1)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(line=marked_lines(), split=st.sampled_from(["off", "on"]))
def test_any_marked_line_gets_its_terms_and_exactly_its_items(greedy, line: str, split) -> None:
    (out,) = guided(greedy, DocumentOptions("xml", split)).translate([line])
    assert xml_items(out) == xml_items(line)
    assert all(holds(out, term) for term in expected_terms(line)), (line, out)


def test_terms_are_matched_on_the_text_without_markup(tok) -> None:
    """``Park`` split by a tag is still the word Park; a tag attribute is not text."""
    t = translator("transformer", tok)
    calls = recording(t)
    line = '<a title="Hund">Ein</a> <b>Pa</b>rk'
    documents = DocumentTranslator(t, DocumentOptions("xml", "off"))
    documents.results([GuidedLine(line, "", Glossary.from_pairs(GLOSSARY.items()))])
    [(pieces, guides)] = calls
    assert pieces == ["Ein Park"]
    assert guides[0].constraints == (term_ids(tok, "playhouse"),)


# --- glossary, prefix and sentence splitting -----------------------------------------------------


def test_each_sentence_gets_its_own_terms_and_only_the_first_the_prefix(tok) -> None:
    t = translator("attention", tok)
    calls = recording(t)
    documents = DocumentTranslator(t, DocumentOptions("off", "on"))
    glossary = Glossary.from_pairs(GLOSSARY.items())
    (result,) = documents.results([GuidedLine(PARAGRAPH, "A dog", glossary)])
    [(pieces, guides)] = calls
    assert pieces == [" ".join(s) for s in sentences(PARAGRAPH, "de")] and len(pieces) == 4
    assert guides[0].prefix == tuple(tok.encode_tgt(["A dog"])[0])
    assert all(g.prefix == () for g in guides[1:])
    for piece, guide in zip(pieces, guides):
        wanted = {term_ids(tok, term) for term in glossary.match(piece)}
        assert set(guide.constraints) == wanted
    assert [len(g.constraints) for g in guides] == [2, 1, 1, 1]
    assert result.text.startswith("A dog")
    assert all(holds(result.text, term) for term in ["red dog", "playhouse", "beach", "woman"])


@pytest.mark.parametrize("backbone", BACKBONES)
def test_split_lines_keep_their_terms_scores_and_alignments(tmp_path: Path, tok, backbone) -> None:
    """N lines in, N out; every term of every sentence; the line's score is the sum of its
    sentences'; alignment links index the whole line's words."""
    ckpt, src = tmp_path / "m.safetensors", tmp_path / "in.de"
    cfg = tiny_config(backbone, **{"search.max_len_a": "0.5", "search.max_len_b": "3"})
    save_checkpoint(ckpt, tiny_model(backbone, tok), tok, cfg)
    lines = [PARAGRAPH, "", "Eine Frau liest.", f"{PARAGRAPH} {PARAGRAPH}"]
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    gloss = tmp_path / "g.tsv"
    gloss.write_text("".join(f"{s}\t{t}\n" for s, t in GLOSSARY.items()), encoding="utf-8")
    args = ["translate", str(ckpt), "-i", str(src), "--glossary", str(gloss), "--scores"]
    args += ["--split-sentences", "on"] + (["--alignments"] if backbone != "lstm" else [])
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    rows = [row.split("\t") for row in result.stdout.splitlines()]
    assert len(rows) == len(lines)
    for line, row in zip(lines, rows):
        output, total, mean = row[:3]
        assert all(holds(output, term) for term in expected_terms(line)), output
        assert math.isfinite(float(total)) and float(total) <= float(mean) <= 0
        if backbone == "lstm":
            continue
        links = [tuple(map(int, p.split("-"))) for p in row[3].split()]
        assert [j for _, j in links] == list(range(len(output.split())))
        assert all(0 <= i < len(line.split()) for i, _ in links)


@pytest.mark.parametrize("markup", ["off", "xml"])
def test_line_scores_and_links_are_those_of_its_sentences_shifted(tok, markup: str) -> None:
    t = translator("transformer", tok)
    line = "Ein <b>Hund</b> rennt. Eine Frau {x} liest." if markup == "xml" else PARAGRAPH
    glossary = Glossary.from_pairs(GLOSSARY.items())
    documents = guided(t, DocumentOptions(markup, "on"), scores=True, alignments=True)
    (result,) = documents.results([GuidedLine(line, "", glossary)])

    plain = parse(line, "xml").plain if markup == "xml" else line
    pieces = [" ".join(s) for s in sentences(plain, "de")]
    guides = [sentence_guides(GuidedLine(p, "", glossary), [p], tok)[0] for p in pieces]
    hyps = t.translate_chunk(pieces, guides)  # the same pieces in the same batch
    total = sum(h[0].log_prob for h in hyps)
    subwords = sum(len(h[0].tokens) + 1 for h in hyps)
    assert result.scores == pytest.approx((total, total / subwords))
    shifted, src_offset, tgt_offset = [], 0, 0
    for piece, [a] in zip(pieces, align_hypotheses(t, pieces, [h[:1] for h in hyps])):
        shifted += [(i + src_offset, j + tgt_offset) for i, j in a.alignment]
        src_offset += len(piece.split())
        tgt_offset += len(a.text.split())
    assert result.alignment == shifted
    out_words = parse(result.text, "xml").plain.split()  # the output without its markup
    assert [j for _, j in result.alignment] == list(range(len(out_words)))
    assert all(0 <= i < len(plain.split()) for i, _ in result.alignment)


def test_line_scores_sum_the_pieces() -> None:
    hyps = [Hypothesis([1, 2], 0.0, -3.0), Hypothesis([4], 0.0, -1.0)]  # tokens, score, log_prob
    assert line_scores(hyps) == (-4.0, -4.0 / 5)
    assert line_scores(hyps[:1]) == (-3.0, -1.0)
    assert line_scores([]) == (0.0, 0.0)
