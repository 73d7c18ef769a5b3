"""`nmt export` to CTranslate2, and translating with the exported directory.

The exported model must compute what the PyTorch model computes: the same greedy output
on a trained model (token for token), and the same log-probabilities under forced
decoding for every Transformer layout the config allows (pre/post-norm, tied/untied
embeddings, joint/separate vocabularies).
"""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path

import ctranslate2
import pytest
import torch
from typer.testing import CliRunner

from nmt.artifacts.checkpoint import save_checkpoint
from nmt.artifacts.ctranslate2 import ExportError, export_ctranslate2
from nmt.cli.app import app
from nmt.config import ConfigError
from nmt.data.batch import collate
from nmt.inference.ct2 import CT2Translator, ExportedModelError
from nmt.inference.load import TranslateOptions, make_translator
from nmt.models import build_model
from nmt.tokenizer import Tokenizer, train_tokenizer
from tests import trained_tiny
from tests.conftest import FIXTURES, tiny_config

runner = CliRunner()


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return trained_tiny.trained_checkpoint(tmp_path_factory.mktemp("ckpt"))


@pytest.fixture(scope="module")
def exported(ckpt, tmp_path_factory) -> Path:
    return export_ctranslate2(ckpt, tmp_path_factory.mktemp("export") / "ct2")


def _tokens(translator, lines: list[str]) -> list[list[int]]:
    return [hyps[0].tokens for hyps in translator.translate_stream(lines)]


def test_float32_greedy_equals_pytorch_greedy(ckpt, exported) -> None:
    ours, theirs = (
        make_translator(ckpt, TranslateOptions(beam=1)),
        make_translator(exported, TranslateOptions(beam=1)),
    )
    assert isinstance(theirs, CT2Translator)
    lines = trained_tiny.sources()
    assert ours.translate_lines(lines) == trained_tiny.references()  # trained: no near-ties
    assert _tokens(theirs, lines) == _tokens(ours, lines)


def test_length_bound_is_the_pytorch_one(ckpt, exported) -> None:
    """Per-sentence bound a * source length + b: a batch of long and short sentences."""
    ours, theirs = (
        make_translator(ckpt, TranslateOptions(beam=1)),
        make_translator(exported, TranslateOptions(beam=1)),
    )
    for tr in (ours, theirs):
        tr.search = dataclasses.replace(tr.search, max_len_a=0.3, max_len_b=2)
    lines = trained_tiny.sources()
    got = _tokens(theirs, lines)
    assert got == _tokens(ours, lines)
    assert any(
        len(g) < len(r)
        for g, r in zip(got, _tokens(make_translator(ckpt, TranslateOptions(beam=1)), lines))
    )


def test_batch_composition_does_not_change_the_output(exported) -> None:
    """What a sentence becomes may not depend on the sentences batched with it (serving)."""
    lines = trained_tiny.sources() + (FIXTURES / "test.de").read_text(encoding="utf-8").splitlines()
    translator = make_translator(exported, TranslateOptions(beam=4))
    whole = translator.translate_lines(lines)
    order = list(range(len(lines)))
    random.Random(0).shuffle(order)
    for start in range(0, len(order), 7):
        part = order[start : start + 7]
        assert translator.translate_lines([lines[i] for i in part]) == [whole[i] for i in part]


def test_cli_round_trip_keeps_lines_and_order(ckpt, exported, tmp_path) -> None:
    lines = trained_tiny.sources()[:6]
    src = tmp_path / "in.de"
    src.write_text("\n".join([lines[0], "", *lines[1:], "   "]) + "\n", encoding="utf-8")
    for model, out in ((exported, tmp_path / "ct2.en"), (ckpt, tmp_path / "pt.en")):
        result = runner.invoke(app, ["translate", str(model), "-i", str(src), "-o", str(out)])
        assert result.exit_code == 0, result.output
    got = (tmp_path / "ct2.en").read_text(encoding="utf-8").splitlines()
    assert got == (tmp_path / "pt.en").read_text(encoding="utf-8").splitlines()
    assert len(got) == 8 and got[1] == "" and got[-1] == ""


def test_nbest_and_evaluate_accept_an_exported_dir(exported, tmp_path) -> None:
    src, ref = tmp_path / "s.de", tmp_path / "r.en"
    src.write_text("\n".join(trained_tiny.sources()) + "\n", encoding="utf-8")
    ref.write_text("\n".join(trained_tiny.references()) + "\n", encoding="utf-8")
    result = runner.invoke(app, ["translate", str(exported), "-i", str(src), "--nbest", "2"])
    rows = [line.split(" ||| ") for line in result.output.splitlines() if " ||| " in line]
    assert result.exit_code == 0 and len(rows) == 2 * len(trained_tiny.sources())
    assert rows[0][0] == rows[1][0] == "0" and float(rows[0][3]) >= float(rows[1][3])  # score
    scored = runner.invoke(
        app,
        ["evaluate", str(exported), "--src", str(src), "--ref", str(ref), "--beam", "1", "--json"],
    )
    assert scored.exit_code == 0, scored.output
    assert json.loads(scored.output[scored.output.index("{") :])["bleu"] == pytest.approx(100.0)


def test_attention_matches_pytorch(ckpt, exported) -> None:
    line = trained_tiny.sources()[3]
    ours = make_translator(ckpt, TranslateOptions(beam=1)).attention(line)
    theirs = make_translator(exported, TranslateOptions(beam=1)).attention(line)
    assert theirs.translation == ours.translation
    assert theirs.src_pieces == ours.src_pieces[:-1]  # CTranslate2 leaves out </s>
    rows = torch.tensor(ours.weights)[: len(theirs.weights), :-1]  # (T, S) without </s>
    assert torch.allclose(torch.tensor(theirs.weights), rows, atol=1e-4)


def test_int8_export_is_smaller_and_translates(ckpt, exported, tmp_path) -> None:
    small = export_ctranslate2(ckpt, tmp_path / "int8", "int8")
    assert (small / "model.bin").stat().st_size < 0.6 * (exported / "model.bin").stat().st_size
    translator = make_translator(small, TranslateOptions(beam=2))
    assert translator.model.compute_type.startswith("int8")
    lines = trained_tiny.sources()
    assert len(translator.translate_lines(lines + [""])) == len(lines) + 1


# --- every layout the config allows computes the same probabilities ------------------------


def _separate_tokenizer(tmp: Path) -> Tokenizer:
    files = ([FIXTURES / "train.de"], [FIXTURES / "train.en"])
    return train_tokenizer(tmp / "spm", *files, vocab_size=200, joint=False)


def _forced_log_probs(model, tok, src: list[str], tgt: list[str]) -> list[torch.Tensor]:
    """Log-probability of every reference token and </s> under teacher forcing."""
    batch = collate(tok.encode_src(src), tok.encode_tgt(tgt), tok)
    with torch.no_grad():
        logp = torch.log_softmax(model(batch.src, batch.src_mask, batch.tgt_in).float(), -1)
    picked = logp.gather(-1, batch.tgt_out.unsqueeze(-1)).squeeze(-1)  # (B, T)
    return [picked[i, : len(t) + 1] for i, t in enumerate(tok.encode_tgt(tgt))]


@pytest.mark.parametrize(
    "norm,tied,joint", [("pre", True, True), ("post", True, True), ("post", False, False)]
)
def test_every_layout_scores_like_pytorch(norm: str, tied: bool, joint: bool, tmp_path) -> None:
    tok = Tokenizer.load(FIXTURES / "spm.tiny", True) if joint else _separate_tokenizer(tmp_path)
    sets = {"model.transformer.norm": norm, "model.transformer.tie_embeddings": str(tied).lower()}
    cfg = tiny_config("transformer", **sets, **{"tokenizer.joint": str(joint).lower()})
    torch.manual_seed(1)
    model = build_model(cfg.model, tok.src_vocab_size, tok.tgt_vocab_size, tok.pad_id).eval()
    save_checkpoint(tmp_path / "m.safetensors", model, tok, cfg)
    out = export_ctranslate2(tmp_path / "m.safetensors", tmp_path / "ct2")
    src = (FIXTURES / "test.de").read_text(encoding="utf-8").splitlines()[:6]
    tgt = (FIXTURES / "test.en").read_text(encoding="utf-8").splitlines()[:6]
    engine = ctranslate2.Translator(str(out))
    results = engine.score_batch(
        [tok.src.encode(s, out_type=str) for s in src],
        [tok.tgt.encode(t, out_type=str) for t in tgt],
    )
    for expected, result in zip(_forced_log_probs(model, tok, src, tgt), results):
        assert torch.allclose(torch.tensor(result.log_probs), expected, atol=1e-4)


# --- refusals -------------------------------------------------------------------------------


@pytest.mark.parametrize("backbone", ["lstm", "attention"])
def test_rnn_backbones_are_refused_in_one_line(backbone: str, tok, tmp_path) -> None:
    cfg = tiny_config(backbone)
    model = build_model(cfg.model, tok.src_vocab_size, tok.tgt_vocab_size, tok.pad_id)
    save_checkpoint(tmp_path / "rnn.safetensors", model, tok, cfg)
    with pytest.raises(ExportError, match="Transformer encoder-decoders only"):
        export_ctranslate2(tmp_path / "rnn.safetensors", tmp_path / "out")
    args = ["export", str(tmp_path / "rnn.safetensors"), "--out", str(tmp_path / "out")]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and "RNN" in result.output
    assert not (tmp_path / "out").exists()


def test_bad_export_requests_are_refused(ckpt, exported, tmp_path) -> None:
    with pytest.raises(ExportError, match="not an empty directory"):
        export_ctranslate2(ckpt, exported)
    with pytest.raises(ExportError, match="--quantization"):
        export_ctranslate2(ckpt, tmp_path / "q", "int4")
    result = runner.invoke(
        app, ["export", str(ckpt), "--out", str(tmp_path / "x"), "--format", "onnx"]
    )
    assert result.exit_code == 2 and "--format" in result.output
    with pytest.raises(ConfigError, match="ensemble"):
        make_translator([exported, exported])


def test_a_mixed_up_export_directory_is_refused(exported, tmp_path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in exported.iterdir():
        (broken / f.name).write_bytes(f.read_bytes())
    vocab = json.loads((broken / "shared_vocabulary.json").read_text(encoding="utf-8"))
    vocab[5], vocab[6] = vocab[6], vocab[5]
    (broken / "shared_vocabulary.json").write_text(json.dumps(vocab), encoding="utf-8")
    with pytest.raises(ExportedModelError, match="vocabulary does not match"):
        make_translator(broken)
