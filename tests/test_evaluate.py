"""Tests for nmt.inference.metrics: exactly what sacrebleu reports, with signatures."""

from __future__ import annotations

import pytest
from sacrebleu.metrics import BLEU, CHRF, TER

from nmt.inference.metrics import format_scores, score
from nmt.textio import read_lines

HYPS = [
    "A man in an orange hat starring at something.",
    "A Boston Terrier is running on lush green grass in front of a white fence.",
    "A girl in karate uniform breaking a stick with a front kick.",
]
REFS = [
    "A man with an orange hat staring at something.",
    "A Boston terrier runs over bright green grass in front of a white fence.",
    "A girl in a karate uniform is breaking a stick with a kick.",
]


def test_identical_corpus_is_perfect() -> None:
    scores = score(REFS, REFS)
    assert scores["bleu"] == pytest.approx(100.0)
    assert scores["bleu_lowercase"] == pytest.approx(100.0)
    assert scores["chrf"] == pytest.approx(100.0)
    assert scores["ter"] == pytest.approx(0.0)
    assert scores["n"] == len(REFS)


def test_matches_sacrebleu_called_directly() -> None:
    scores = score(HYPS, REFS)
    bleu = BLEU().corpus_score(HYPS, [REFS])
    assert scores["bleu"] == pytest.approx(bleu.score)
    assert scores["bleu_detail"] == str(bleu)
    assert scores["chrf"] == pytest.approx(CHRF().corpus_score(HYPS, [REFS]).score)
    assert scores["ter"] == pytest.approx(TER().corpus_score(HYPS, [REFS]).score)
    assert 0.0 < scores["bleu"] < 100.0


def test_signatures_describe_the_configuration() -> None:
    scores = score(HYPS, REFS)
    assert "case:mixed" in scores["bleu_signature"]
    assert "tok:13a" in scores["bleu_signature"]
    assert "case:lc" in scores["bleu_lowercase_signature"]
    assert scores["chrf_signature"].startswith("nrefs:1")
    assert "tok:tercom" in scores["ter_signature"]
    assert scores["bleu_detail"].startswith("BLEU = ")


def test_lowercase_bleu_ignores_case() -> None:
    hyps = ["the cat sat on the mat .", "A DOG RAN IN THE PARK ."]
    refs = ["The cat sat on the mat .", "A dog ran in the park ."]
    scores = score(hyps, refs)
    assert scores["bleu_lowercase"] >= scores["bleu"]
    assert scores["bleu_lowercase"] == pytest.approx(100.0)
    assert scores["bleu"] < 100.0


def test_count_mismatch_names_both_counts() -> None:
    with pytest.raises(ValueError, match=r"3 hypotheses, 2 references"):
        score(HYPS, REFS[:2])


def test_empty_corpus_is_rejected() -> None:
    with pytest.raises(ValueError, match="nothing to score"):
        score([], [])


def test_read_lines_strips_only_the_newline(tmp_path) -> None:
    path = tmp_path / "hyp.txt"
    path.write_bytes("  Ein Hund läuft. \nzwei\r\n\nvier\u2028bleibt\n".encode())
    assert read_lines(path) == ["  Ein Hund läuft. ", "zwei", "", "vier\u2028bleibt"]
    path.write_text("", encoding="utf-8")
    assert read_lines(path) == []
    path.write_text("no final newline", encoding="utf-8")
    assert read_lines(path) == ["no final newline"]


def test_format_scores_lists_every_metric() -> None:
    scores = score(HYPS, REFS)
    text = format_scores(scores)
    assert f"{scores['bleu']:.2f}" in text
    assert scores["bleu_signature"] in text
    assert scores["bleu_detail"] in text
    for label in ("BLEU (lc)", "chrF", "TER"):
        assert label in text
    assert len(text.splitlines()) >= 4
