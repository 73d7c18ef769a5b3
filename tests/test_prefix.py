"""Prefix-constrained decoding (``nmt translate --prefix``) and the ``--scores`` column."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from nmt.artifacts.checkpoint import save_checkpoint
from nmt.artifacts.ctranslate2 import export_ctranslate2
from nmt.cli.app import app
from nmt.config import SearchConfig
from nmt.inference.guide import Guide
from nmt.inference.guided import scores
from nmt.inference.load import TranslateOptions, make_translator
from nmt.inference.scoring import Scorer
from nmt.inference.translator import Translator
from tests import trained_tiny
from tests.conftest import BACKBONES, tiny_config, tiny_model

SENTENCES = ["Zwei junge Männer stehen am Strand.", "Ein Hund rennt.", "", "Eine Frau liest."]
PREFIXES = ["Two young", "", "ignored", "A woman is"]
runner = CliRunner()


def guides(tok) -> list[Guide]:
    return [Guide(tuple(tok.encode_tgt([p])[0]) if p else ()) for p in PREFIXES]


@pytest.mark.parametrize("backbone", BACKBONES)
@pytest.mark.parametrize("beam", [1, 3])
def test_outputs_start_with_their_prefix(backbone: str, beam: int, tok) -> None:
    search = SearchConfig(beam=beam, nbest=min(beam, 2), max_len_a=0.5, max_len_b=2)
    translator = Translator(tiny_model(backbone, tok).eval(), tok, search)
    results = translator.translate_chunk(SENTENCES, guides(tok))
    for line, guide, hyps in zip(SENTENCES, guides(tok), results):
        for h in hyps:
            if not line:
                assert h.tokens == []  # an empty line stays empty
            else:
                assert tuple(h.tokens[: len(guide.prefix)]) == guide.prefix
                assert tok.eos_id not in h.tokens


def test_a_prefix_continues_as_the_model_would(tmp_path: Path) -> None:
    """On a trained model, the prefix of the reference gives the reference back."""
    ckpt = trained_tiny.trained_checkpoint(tmp_path)
    translator = make_translator(ckpt, TranslateOptions(beam=2))
    refs = trained_tiny.references()[:4]
    prefixes = [" ".join(r.split()[:2]) for r in refs]
    tok = translator.tok
    hyps = translator.translate_chunk(
        trained_tiny.sources()[:4], [Guide(tuple(tok.encode_tgt([p])[0])) for p in prefixes]
    )
    assert [translator.detok(h[0]) for h in hyps] == refs


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, tok) -> Path:
    path = tmp_path_factory.mktemp("prefix") / "model.safetensors"
    save_checkpoint(path, tiny_model("transformer", tok), tok, tiny_config("transformer"))
    return path


def _files(tmp_path: Path, prefixes: list[str]) -> tuple[Path, Path]:
    src, pre = tmp_path / "in.de", tmp_path / "prefix.en"
    src.write_text("\n".join(SENTENCES) + "\n", encoding="utf-8")
    pre.write_text("\n".join(prefixes) + "\n", encoding="utf-8")
    return src, pre


def test_cli_prefix_and_scores_columns(ckpt: Path, tmp_path: Path) -> None:
    src, pre = _files(tmp_path, PREFIXES)
    args = ["translate", str(ckpt), "-i", str(src), "--prefix", str(pre), "--scores"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == len(SENTENCES)
    for line, prefix, source in zip(lines, PREFIXES, SENTENCES):
        text, total, mean = line.split("\t")
        if source:
            assert text.startswith(prefix) and float(total) < 0 and float(mean) < 0
            assert float(total) <= float(mean)
        else:
            assert text == "" and float(total) == 0.0


def test_cli_prefix_line_count_mismatch_is_one_line_error(ckpt: Path, tmp_path: Path) -> None:
    src, pre = _files(tmp_path, PREFIXES[:3])
    result = runner.invoke(app, ["translate", str(ckpt), "-i", str(src), "--prefix", str(pre)])
    assert result.exit_code == 2
    assert "has 3 lines but" in result.output and len(result.output.strip().splitlines()) == 1


def test_ctranslate2_export_takes_prefixes_and_refuses_glossaries(tmp_path: Path) -> None:
    ckpt = trained_tiny.trained_checkpoint(tmp_path)
    export = export_ctranslate2(ckpt, tmp_path / "ct2")
    refs = trained_tiny.references()[:3]
    src, pre = tmp_path / "in.de", tmp_path / "p.en"
    src.write_text("\n".join(trained_tiny.sources()[:3]) + "\n", encoding="utf-8")
    pre.write_text("\n".join([" ".join(refs[0].split()[:2]), "", "Some"]) + "\n", "utf-8")
    result = runner.invoke(app, ["translate", str(export), "-i", str(src), "--prefix", str(pre)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[:2] == refs[:2] and lines[2].startswith("Some")
    gloss = tmp_path / "g.tsv"
    gloss.write_text("Männer\tguys\n", encoding="utf-8")
    result = runner.invoke(
        app, ["translate", str(export), "-i", str(src), "--glossary", str(gloss)]
    )
    assert result.exit_code == 2 and "PyTorch" in result.output
    for flag in ("--scores", "--alignments"):
        result = runner.invoke(app, ["translate", str(export), "-i", str(src), flag])
        assert result.exit_code == 2 and "PyTorch" in result.output, result.output


@pytest.mark.parametrize("backbone", BACKBONES)
def test_scores_are_the_forced_decoding_log_probabilities(backbone: str, tok) -> None:
    """The --scores total of a guided beam output is what `nmt score` gives its tokens."""
    model = tiny_model(backbone, tok).eval()
    search = SearchConfig(beam=3, max_len_a=1.0, max_len_b=10)
    translator = Translator(model, tok, search)
    lines = [s for s in SENTENCES if s]
    prefixed = [g for line, g in zip(SENTENCES, guides(tok)) if line]
    dog = tuple(tok.encode_tgt(["dog"])[0])
    for chosen in (prefixed, [Guide(g.prefix, (dog,)) for g in prefixed]):
        hyps = [h[0] for h in translator.translate_chunk(lines, chosen)]
        scored = Scorer(model, tok).score_batch(tok.encode_src(lines), [h.tokens for h in hyps])
        for h, s in zip(hyps, scored):
            assert scores(h)[0] == pytest.approx(s.total, abs=1e-4)
            assert scores(h)[1] == pytest.approx(s.mean, abs=1e-4)
