"""Inline markup and placeholders (``nmt translate --markup``): out before translation,
back after it, well-formed and complete whatever the model does."""

from __future__ import annotations

import dataclasses
import random
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from nmt.artifacts.checkpoint import save_checkpoint
from nmt.cli.app import app
from nmt.inference.documents import (
    DocumentOptions,
    DocumentTranslator,
    _forced_attention,
    attention_alignment,
)
from nmt.inference.markup import markup_signature, parse, placeholders_in
from nmt.inference.tag_placement import restore
from nmt.inference.translator import Translator
from tests.conftest import BACKBONES, tiny_config, tiny_model

runner = CliRunner()


def copy_model(line: str, mode: str = "xml") -> str:
    """Restore with a "model" that copies the source words in order (identity alignment)."""
    marked = parse(line, mode)
    words = marked.plain.split()
    return restore(marked, " ".join(words), [(i, i) for i in range(len(words))])


def xml_items(text: str) -> tuple[Counter, Counter]:
    """Tags (name, attributes) and placeholders of ``text``, read by ElementTree (which
    raises on ill-formed XML)."""
    root = ET.fromstring(f"<root>{text}</root>")
    tags = Counter((e.tag, tuple(sorted(e.attrib.items()))) for e in root.iter() if e is not root)
    pieces = [root.text] + [p for e in root.iter() if e is not root for p in (e.text, e.tail)]
    return tags, Counter(p for piece in pieces if piece for p in placeholders_in(piece))


# --- examples ------------------------------------------------------------------------------------


def test_tags_come_back_around_the_words_they_wrapped() -> None:
    assert copy_model("Klicken Sie <b>hier</b> jetzt") == "Klicken Sie <b>hier</b> jetzt"
    marked = parse("ein <b>roter</b> Hut", "xml")
    assert marked.plain == "ein roter Hut"
    # the target reorders: "hat red a"; the tag follows the aligned word
    assert restore(marked, "hat red a", [(0, 2), (1, 1), (2, 0)]) == "hat <b>red</b> a"


def test_nested_tags_and_attributes_are_kept_byte_for_byte() -> None:
    line = 'a <b class="x">b <a href="x>y" title=\'&amp;\'>c</a></b> d'
    out = copy_model(line)
    assert "<a href=\"x>y\" title='&amp;'>" in out and '<b class="x">' in out
    assert markup_signature(out, "xml")[0] == markup_signature(line, "xml")[0]
    ET.fromstring(f"<r>{out}</r>")


def test_placeholders_pass_through_verbatim_and_are_hidden_from_the_model() -> None:
    line = "Hallo {name}, %s hat %(count)d und %1$s: http://x.org/a?b=1&amp;c=2. Mail a.b@c.de"
    marked = parse(line, "xml")
    for hidden in ("{name}", "%s", "%(count)d", "%1$s", "http", "@"):
        assert hidden not in marked.plain
    out = copy_model(line)
    for kept in ("{name}", "%s", "%(count)d", "%1$s", "http://x.org/a?b=1&amp;c=2", "a.b@c.de"):
        assert kept in out
    assert out.endswith("a.b@c.de") and "c=2 ." in out  # the full stop is not part of the URL


def test_entities_are_decoded_for_the_model_and_escaped_again() -> None:
    marked = parse("Tom &amp; Jerry &#233;t&eacute; &lt;3", "xml")
    assert marked.plain == "Tom & Jerry été <3"
    assert copy_model("Tom &amp; Jerry &lt;3") == "Tom &amp; Jerry &lt;3"


def test_what_the_model_writes_stays_text() -> None:
    marked = parse("ein <b>Hut</b>", "xml")
    out = restore(marked, "a <i>hat & %s {x} www.evil.com", None)
    assert "<i>" not in out and "&lt;i&gt;hat &amp;" in out
    assert "%s" not in out and "{x}" not in out and "evil" not in out  # no invented placeholders
    assert markup_signature(out, "xml")[0] == Counter(["<b>", "</b>"])


@pytest.mark.parametrize("translation", ["", "x", "a a a a a a a a", "c b a"])
def test_markup_survives_any_model_output(translation: str) -> None:
    line = "<p>a <b>b</b> {n}<br/> c</p>"
    out = restore(parse(line, "xml"), translation, None)
    assert xml_items(out) == xml_items(line)


def test_malformed_markup_keeps_its_exact_tag_sequence() -> None:
    malformed = ["<b>unclosed text", "stray </i> end", "<b><i>crossed</b></i> tags", "a </b> <b> z"]
    for line in malformed:
        marked = parse(line, "xml")
        assert marked.ordered
        for translation in ["", "one", "one two three four five six"]:
            out = restore(marked, translation, [(0, 0), (1, 5), (2, 1)])
            assert markup_signature(out, "xml")[1] == markup_signature(line, "xml")[1]


def test_stray_angle_brackets_and_ampersands_are_text() -> None:
    assert copy_model("a < b > c & d") == "a &lt; b &gt; c &amp; d"
    assert copy_model("x <b") == "x &lt;b"


def test_comments_and_cdata_pass_through() -> None:
    line = "q <!-- note <b> --> w <![CDATA[ <i>raw</i> ]]> e"
    marked = parse(line, "xml")
    assert marked.plain.split() == ["q", "w", "e"]
    out = copy_model(line)
    assert "<!-- note <b> -->" in out and "<![CDATA[ <i>raw</i> ]]>" in out


def test_html_mode_knows_void_elements() -> None:
    line = 'Zeile<br> eins <img src="a.png" alt="x>y"> <b>zwei</b>'
    assert not parse(line, "html").ordered  # <br> and <img> need no end tag in HTML
    assert parse(line, "xml").ordered  # in XML they are unclosed
    out = copy_model(line, "html")
    assert markup_signature(out, "html")[0] == markup_signature(line, "html")[0]
    assert markup_signature(out, "html")[2]  # balanced
    assert parse("<B>x</b>", "html").ordered is False  # HTML tag names ignore case


# --- properties ----------------------------------------------------------------------------------

WORDS = st.sampled_from(["Hund", "rennt", "im", "Park", "&amp;", "a&lt;b", "Frau", "."])
PLACEHOLDERS = st.sampled_from(["{name}", "%s", "%(n)d", "%1$s", "http://ex.org/p?q=1", "x@y.de"])
OPEN = st.sampled_from(["<b>", '<a href="u>v">', "<i class='c'>", '<span title="&amp;">'])
POINTS = st.sampled_from(["<br/>", '<img src="p.png"/>', "<!-- c -->"])


def _close(open_tag: str) -> str:
    return "</" + open_tag[1:].split(">")[0].split()[0].rstrip(">") + ">"


@st.composite
def marked_lines(draw: st.DrawFn, depth: int = 2) -> str:
    """Words, placeholders, points and (nested) pairs of tags: a well-formed line."""
    parts = []
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from(["word", "word", "word", "ph", "point", "pair"]))
        if kind == "word":
            parts.append(draw(WORDS))
        elif kind == "ph":
            parts.append(draw(PLACEHOLDERS))
        elif kind == "point":
            parts.append(draw(POINTS))
        elif depth > 0:
            tag = draw(OPEN)
            parts.append(tag + draw(marked_lines(depth - 1)) + _close(tag))
    return " ".join(parts)


@st.composite
def model_outputs(draw: st.DrawFn, words: list[str]) -> tuple[str, list[tuple[int, int]]]:
    """A misbehaving "model": source words dropped, repeated, shuffled, or none at all;
    and an alignment that may point anywhere (out of range included)."""
    rng = random.Random(draw(st.integers(0, 10**6)))
    out = [w for w in words if rng.random() > 0.3] * draw(st.integers(0, 2))
    rng.shuffle(out)
    pairs = draw(st.lists(st.tuples(st.integers(-1, 12), st.integers(-1, 12)), max_size=12))
    return " ".join(out), pairs


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(line=marked_lines(), data=st.data(), aligned=st.booleans())
def test_output_is_well_formed_with_exactly_the_input_items(line, data, aligned) -> None:
    marked = parse(line, "xml")
    translation, pairs = data.draw(model_outputs(marked.plain.split()))
    out = restore(marked, translation, pairs if aligned else None)
    assert xml_items(out) == xml_items(line)  # raises if ill-formed


TAG_SOUP = st.sampled_from(
    ["<b>", "</b>", "<i>", "</i>", "<", ">", "&", "&amp;", "x", "{p}", "</", "<br>", "<!--"]
    + ["-->", '<a href="x>y">', "</a>", "<![CDATA[", "]]>", "<B>", "%s", "<p/>", "&#", "'", '"']
)


@settings(max_examples=300, deadline=None)
@given(parts=st.lists(TAG_SOUP, max_size=10), spaces=st.booleans(), data=st.data())
def test_hostile_markup_never_crashes_and_keeps_its_items(parts, spaces, data) -> None:
    line = (" " if spaces else "").join(parts)
    for mode in ("xml", "html"):
        marked = parse(line, mode)
        translation, pairs = data.draw(model_outputs(marked.plain.split()))
        out = restore(marked, translation, pairs)
        items, sequence, balanced = markup_signature(line, mode)
        out_items, out_sequence, out_balanced = markup_signature(out, mode)
        assert out_items == items
        assert out_balanced if balanced else out_sequence == sequence


# --- end to end ----------------------------------------------------------------------------------

LINES = [
    "Ein <b>Hund</b> rennt im <i>Park</i>.",
    'Klicken Sie <a href="/x?a=1&amp;b=2">hier</a>, {name}!',
    "",
    "Zwei <b>junge <i>Männer</i></b> stehen<br/> am Strand %s.",
    "<b>offen",
]


@pytest.mark.parametrize("backbone", BACKBONES)
def test_translate_markup_keeps_every_tag_on_every_backbone(tmp_path: Path, tok, backbone) -> None:
    ckpt = tmp_path / "m.safetensors"
    cfg = tiny_config(backbone, **{"search.max_len_a": "1.0", "search.max_len_b": "4"})
    save_checkpoint(ckpt, tiny_model(backbone, tok), tok, cfg)
    src, out = tmp_path / "in.de", tmp_path / "out.en"
    src.write_text("\n".join(LINES) + "\n", encoding="utf-8")
    args = ["translate", str(ckpt), "-i", str(src), "-o", str(out), "--markup", "xml"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    outputs = out.read_text(encoding="utf-8").split("\n")[:-1]
    assert len(outputs) == len(LINES) and outputs[2] == ""
    for line, output in zip(LINES[:4], outputs[:4]):
        assert xml_items(output) == xml_items(line), output
    assert markup_signature(outputs[4], "xml")[1] == ["<b>"]


def test_translate_refuses_unknown_markup_and_nbest(tmp_path: Path, tok) -> None:
    ckpt = tmp_path / "m.safetensors"
    save_checkpoint(ckpt, tiny_model("transformer", tok), tok, tiny_config("transformer"))
    src = tmp_path / "in.de"
    src.write_text("Ein Hund.\n", encoding="utf-8")
    bad = runner.invoke(app, ["translate", str(ckpt), "-i", str(src), "--markup", "sgml"])
    assert bad.exit_code == 2 and "--markup must be xml, html or off" in bad.output
    nbest = ["translate", str(ckpt), "-i", str(src), "--markup", "xml", "--nbest", "2"]
    nbest_result = runner.invoke(app, [*nbest, "--beam", "2"])
    assert nbest_result.exit_code == 2 and "--nbest" in nbest_result.output


# --- the alignment that places tags --------------------------------------------------------------


@pytest.mark.parametrize("backbone", ["attention", "transformer"])
def test_forced_attention_matches_the_attention_of_the_search(tok, backbone) -> None:
    cfg = tiny_config(backbone)
    search = dataclasses.replace(cfg.search, beam=1, max_len_a=0.5, max_len_b=3)
    translator = Translator(tiny_model(backbone, tok), tok, search)
    sources = ["Ein Hund rennt im Park.", "Zwei junge Männer stehen am Strand und lachen."]
    hyps = [h[0] for h in translator.translate_chunk(sources)]
    rows = _forced_attention(translator, translator.model, list(zip(sources, hyps)))  # padded
    for source, hyp, got in zip(sources, hyps, rows):
        expected = translator.attention(source).weights[: len(hyp.tokens)]
        assert len(got) == len(hyp.tokens)
        for row, want in zip(got, expected):
            assert row[: len(want)] == pytest.approx(want, abs=1e-4)
    lstm = Translator(tiny_model("lstm", tok), tok, search)
    assert attention_alignment(lstm, [("x", hyps[0])]) == [None]  # no attention to align by


def test_the_aligner_is_one_swappable_call(tok) -> None:
    cfg = tiny_config("transformer")
    translator = Translator(tiny_model("transformer", tok), tok, cfg.search)
    reverse_calls = []

    def reverse(t: Translator, pairs: list) -> list:
        reverse_calls.append(pairs)
        out = []
        for src, hyp in pairs:
            n, m = len(src.split()), len(t.detok(hyp).split())
            out.append([(i, m - 1 - i) for i in range(min(n, m))])
        return out

    documents = DocumentTranslator(translator, DocumentOptions("xml"), aligner=reverse)
    (out,) = documents.translate(["<b>Ein</b> Hund rennt im Park ."])
    assert reverse_calls and xml_items(out) == xml_items("<b>x</b>")
    words = translator.translate_lines(["Ein Hund rennt im Park ."])[0].split()
    if len(words) >= 2:
        assert out.endswith(f"<b>{words[-1]}</b>")  # word 0 aligned to the last target word
