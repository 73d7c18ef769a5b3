"""``nmt export --format huggingface`` and ``nmt import``: transformers computes what nmt
computes, both ways.

Export: on the trained tiny model, transformers' greedy ``generate`` gives nmt's greedy
output token for token, its tokenizer gives nmt's ids, and ``pipeline("translation")``
runs the directory; a post-norm model (MarianMT, permuted residual basis) gives nmt's
logits under forced decoding. Import: a randomly initialised MarianMT built with
transformers translates the same in nmt as in transformers, and the imported run
fine-tunes with ``nmt train --init``. Shapes nmt cannot express, RNN backbones and
foreign or damaged directories are refused in one line.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from nmt.artifacts.checkpoint import load_checkpoint, save_checkpoint
from nmt.artifacts.huggingface import export_huggingface
from nmt.cli.app import app
from nmt.data.batch import collate
from nmt.inference.load import TranslateOptions, make_translator
from nmt.models import build_model
from nmt.tokenizer import Tokenizer, train_tokenizer
from nmt.training import train_from_config
from tests import trained_tiny
from tests.conftest import FIXTURES, tiny_config, tiny_model

transformers = pytest.importorskip("transformers", reason="the hf extra is not installed")

runner = CliRunner()
QUIET = ["train.log_every=1", "train.keep_checkpoints=0", "train.tensorboard=false"]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return trained_tiny.trained_checkpoint(tmp_path_factory.mktemp("ckpt"))


@pytest.fixture(scope="module")
def exported(ckpt, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("export") / "hf"
    result = runner.invoke(app, ["export", str(ckpt), "--format", "huggingface", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


def _nmt_tokens(model: Path, lines: list[str]) -> list[list[int]]:
    translator = make_translator(model, TranslateOptions(beam=1))
    return [hyps[0].tokens for hyps in translator.translate_stream(lines)]


def _strip(ids: list[int], tok: Tokenizer) -> list[int]:
    """Generated ids without the decoder start, EOS and padding."""
    return [i for i in ids[1:] if i not in (tok.eos_id, tok.pad_id)]


def _hf_greedy(directory: Path, lines: list[str], max_new: list[int] | None = None) -> list:
    model = transformers.AutoModelForSeq2SeqLM.from_pretrained(str(directory)).eval()
    hf_tok = transformers.AutoTokenizer.from_pretrained(str(directory))
    outputs = []
    for i, line in enumerate(lines):  # one by one: each with its own length limit
        enc = hf_tok([line], return_tensors="pt")
        limit = {"max_new_tokens": max_new[i]} if max_new else {}
        with torch.no_grad():
            outputs.append(model.generate(**enc, num_beams=1, do_sample=False, **limit)[0].tolist())
    return outputs


# --- export -----------------------------------------------------------------------------------


def test_export_loads_with_auto_classes_and_greedy_equals_nmt(ckpt, exported) -> None:
    _, tok, _, _ = load_checkpoint(ckpt)
    lines = trained_tiny.sources()
    model = transformers.AutoModelForSeq2SeqLM.from_pretrained(str(exported))
    assert type(model).__name__ == "BlenderbotForConditionalGeneration"  # pre-norm
    hf_tok = transformers.AutoTokenizer.from_pretrained(str(exported))
    ours = _nmt_tokens(ckpt, lines)
    assert [tok.decode_tgt(t) for t in ours] == trained_tiny.references()  # no near-ties
    theirs = _hf_greedy(exported, lines)
    assert [_strip(t, tok) for t in theirs] == ours
    assert all(t[0] == tok.bos_id for t in theirs)  # decoder starts from our <s>
    texts = hf_tok.batch_decode(theirs, skip_special_tokens=True)
    assert texts == trained_tiny.references()


def test_tokenizer_gives_nmt_ids_on_every_fixture_line(ckpt, exported) -> None:
    _, tok, _, _ = load_checkpoint(ckpt)
    hf_tok = transformers.AutoTokenizer.from_pretrained(str(exported))
    src = (FIXTURES / "train.de").read_text(encoding="utf-8").splitlines()
    tgt = (FIXTURES / "train.en").read_text(encoding="utf-8").splitlines()
    assert hf_tok(src)["input_ids"] == tok.encode_src(src)
    labels = hf_tok(text_target=tgt)["input_ids"]
    assert labels == [ids + [tok.eos_id] for ids in tok.encode_tgt(tgt)]
    assert hf_tok.pad_token_id == tok.pad_id and hf_tok.eos_token_id == tok.eos_id


def test_pipeline_translates_the_exported_directory(exported) -> None:
    from transformers.pipelines import SUPPORTED_TASKS

    if "translation" not in SUPPORTED_TASKS:  # transformers 5 removed it (REMOVED_TASKS)
        pytest.skip(f"transformers {transformers.__version__} has no translation pipeline")
    translate = transformers.pipeline("translation", model=str(exported), num_beams=1)
    lines = trained_tiny.sources()[:4]
    out = translate(lines)
    assert [o["translation_text"] for o in out] == trained_tiny.references()[:4]


def test_generation_config_and_model_card(exported, ckpt) -> None:
    _, tok, cfg, _ = load_checkpoint(ckpt)
    gen = json.loads((exported / "generation_config.json").read_text())
    assert gen["num_beams"] == cfg.search.beam
    assert gen["length_penalty"] == cfg.search.length_penalty
    assert gen["decoder_start_token_id"] == tok.bos_id and gen["eos_token_id"] == tok.eos_id
    card = (exported / "README.md").read_text()
    assert "pipeline_tag: translation" in card and "d_model 32" in card
    assert "((5 + len) / 6)" in card  # the length-penalty difference is documented


@pytest.mark.parametrize(("tied", "joint"), [(True, True), (False, True), (False, False)])
def test_post_norm_exports_as_marian_with_the_same_logits(tied, joint, tmp_path) -> None:
    if joint:
        tok = Tokenizer.load(FIXTURES / "spm.tiny", joint=True)
    else:
        files = ([FIXTURES / "train.de"], [FIXTURES / "train.en"])
        tok = train_tokenizer(tmp_path / "spm", *files, vocab_size=200, joint=False)
    sets = {"model.transformer.norm": "post", "model.transformer.tie_embeddings": str(tied)}
    cfg = tiny_config("transformer", **sets, **{"tokenizer.joint": str(joint).lower()})
    torch.manual_seed(0)
    model = build_model(cfg.model, tok.src_vocab_size, tok.tgt_vocab_size, tok.pad_id).eval()
    save_checkpoint(tmp_path / "post.safetensors", model, tok, cfg)
    out = export_huggingface(tmp_path / "post.safetensors", tmp_path / "hf")
    hf = transformers.AutoModelForSeq2SeqLM.from_pretrained(str(out)).eval()
    assert type(hf).__name__ == "MarianMTModel"
    src, tgt = trained_tiny.sources(), trained_tiny.references()
    hf_tok = transformers.AutoTokenizer.from_pretrained(str(out))
    assert hf_tok(src)["input_ids"] == tok.encode_src(src)
    labels = hf_tok(text_target=tgt)["input_ids"]
    assert labels == [ids + [tok.eos_id] for ids in tok.encode_tgt(tgt)]
    batch = collate(tok.encode_src(src), tok.encode_tgt(tgt), tok)
    with torch.no_grad():
        ours = model(batch.src, batch.src_mask, batch.tgt_in)  # (B, T, V)
        theirs = hf(
            input_ids=batch.src,
            attention_mask=batch.src_mask.long(),
            decoder_input_ids=batch.tgt_in,
        ).logits
    real = batch.tgt_in != tok.pad_id
    assert torch.allclose(ours[real], theirs[real], atol=1e-4)
    run = tmp_path / "back"  # and back: the permutation is undone exactly
    assert runner.invoke(app, ["import", str(out), "--out", str(run)]).exit_code == 0
    back, back_tok, back_cfg, _ = load_checkpoint(run)
    assert back_cfg.model.transformer == cfg.model.transformer
    assert (back_tok.src_proto, back_tok.tgt_proto) == (tok.src_proto, tok.tgt_proto)
    for (name, a), b in zip(model.state_dict().items(), back.state_dict().values()):
        assert torch.equal(a, b), name


def test_pre_norm_without_tied_embeddings_is_refused(tok, tmp_path) -> None:
    cfg = tiny_config("transformer", **{"model.transformer.tie_embeddings": "false"})
    model = build_model(cfg.model, tok.src_vocab_size, tok.tgt_vocab_size, tok.pad_id)
    save_checkpoint(tmp_path / "m.safetensors", model, tok, cfg)
    args = ["export", str(tmp_path / "m.safetensors"), "--format", "huggingface"]
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "hf")])
    assert result.exit_code == 2 and "tie_embeddings=false" in result.output


def test_rnn_backbones_are_refused_in_one_line(tok, tmp_path) -> None:
    path = tmp_path / "lstm.safetensors"
    save_checkpoint(path, tiny_model("lstm", tok), tok, tiny_config("lstm"))
    args = ["export", str(path), "--format", "huggingface", "--out", str(tmp_path / "hf")]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert "lstm" in result.output and "RNN" in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1


def test_unknown_format_and_quantization_are_usage_errors(ckpt, tmp_path) -> None:
    base = ["export", str(ckpt), "--out", str(tmp_path / "x")]
    assert runner.invoke(app, base + ["--format", "onnx"]).exit_code == 2
    bad = runner.invoke(app, base + ["--format", "huggingface", "--quantization", "int8"])
    assert bad.exit_code == 2 and "ctranslate2 only" in bad.output


# --- import -----------------------------------------------------------------------------------


def _marian_dir(directory: Path, **overrides) -> Path:
    """A randomly initialised MarianMT with the tiny SentencePiece model, built by transformers."""
    tok = Tokenizer.load(FIXTURES / "spm.tiny", joint=True)
    settings = dict(
        vocab_size=tok.src_vocab_size,
        decoder_vocab_size=tok.src_vocab_size,
        d_model=32,
        encoder_layers=2,
        decoder_layers=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        max_position_embeddings=256,
        activation_function="relu",
        scale_embedding=True,
        init_std=0.3,  # peaked outputs: no near-ties for float rounding to break
        pad_token_id=tok.pad_id,
        eos_token_id=tok.eos_id,
        bos_token_id=tok.bos_id,
        decoder_start_token_id=tok.bos_id,
        forced_eos_token_id=None,
    )
    torch.manual_seed(3)
    model = transformers.MarianMTModel(transformers.MarianConfig(**{**settings, **overrides}))
    with torch.no_grad():  # a longer EOS vector: some outputs end before the length limit
        model.model.shared.weight[tok.eos_id] *= 2.5
    model.save_pretrained(str(directory))
    vocab = {tok.src.id_to_piece(i): i for i in range(tok.src_vocab_size)}
    (directory / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    spm = FIXTURES / "spm.tiny.model"
    transformers.MarianTokenizer(
        source_spm=str(spm), target_spm=str(spm), vocab=str(directory / "vocab.json")
    ).save_pretrained(str(directory))
    return directory


@pytest.fixture(scope="module")
def marian(tmp_path_factory) -> Path:
    return _marian_dir(tmp_path_factory.mktemp("marian") / "m")


@pytest.fixture(scope="module")
def imported(marian, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("imported") / "run"
    result = runner.invoke(app, ["import", str(marian), "--out", str(run)])
    assert result.exit_code == 0, result.output
    return run


def test_imported_marian_translates_as_transformers_does(imported, marian) -> None:
    _, tok, cfg, _ = load_checkpoint(imported)
    assert cfg.model.transformer.norm == "post" and cfg.model.transformer.d_model == 32
    lines = (FIXTURES / "train.de").read_text(encoding="utf-8").splitlines()[:24]
    ours = _nmt_tokens(imported, lines)
    s = cfg.search
    limits = [int(s.max_len_a * len(ids) + s.max_len_b) - 1 for ids in tok.encode_src(lines)]
    theirs = [_strip(t, tok) for t in _hf_greedy(marian, lines, limits)]
    assert theirs == ours  # 100% of the lines
    assert any(0 < len(t) < limit for t, limit in zip(ours, limits))  # some stop at EOS


def test_imported_run_translates_from_the_cli_and_fine_tunes(imported, tmp_path) -> None:
    src = tmp_path / "in.de"
    src.write_text("\n".join(trained_tiny.sources()[:3]) + "\n", encoding="utf-8")
    result = runner.invoke(app, ["translate", str(imported), "-i", str(src), "--beam", "2"])
    assert result.exit_code == 0, result.output
    sets = [
        f"data.dir={FIXTURES}",
        "data.train=train",
        "data.valid=val",
        "train.max_steps=2",
        "train.valid_every=100",
        "train.precision=fp32",
        *QUIET,
    ]
    outcome = train_from_config(None, sets, tmp_path / "ft", init=imported)
    assert outcome.exit_code == 0 and outcome.state.step == 2


def test_export_then_import_round_trips_the_weights(ckpt, exported, tmp_path) -> None:
    run = tmp_path / "back"
    assert runner.invoke(app, ["import", str(exported), "--out", str(run)]).exit_code == 0
    original, _, cfg, _ = load_checkpoint(ckpt)
    back, _, back_cfg, _ = load_checkpoint(run)
    assert back_cfg.model.transformer == cfg.model.transformer
    for (name, a), b in zip(original.state_dict().items(), back.state_dict().values()):
        assert torch.equal(a, b), name


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"activation_function": "gelu"}, "activation_function"),
        ({"scale_embedding": False}, "scale_embedding"),
        ({"decoder_start_token_id": 0}, "decoder_start_token_id"),
    ],
)
def test_shapes_nmt_cannot_express_are_refused_naming_the_field(override, field, tmp_path) -> None:
    directory = _marian_dir(tmp_path / "m", **override)
    result = runner.invoke(app, ["import", str(directory), "--out", str(tmp_path / "run")])
    assert result.exit_code == 2 and field in result.output, result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1


def test_foreign_and_damaged_directories_are_one_line_errors(marian, tmp_path) -> None:
    cases = {}
    cases["empty"] = tmp_path / "empty"
    cases["empty"].mkdir()
    cases["m2m"] = shutil.copytree(marian, tmp_path / "m2m")
    config = json.loads((cases["m2m"] / "config.json").read_text())
    (cases["m2m"] / "config.json").write_text(json.dumps({**config, "model_type": "m2m_100"}))
    cases["weights"] = shutil.copytree(marian, tmp_path / "weights")
    weights = cases["weights"] / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    cases["json"] = shutil.copytree(marian, tmp_path / "json")
    (cases["json"] / "config.json").write_text("{not json")
    cases["vocab"] = shutil.copytree(marian, tmp_path / "vocab")
    (cases["vocab"] / "vocab.json").write_text(json.dumps({"<unk>": 0, "<pad>": 1}))
    expected = {
        "empty": "no config.json",
        "m2m": "m2m_100",
        "weights": "cannot load the weights",
        "json": "not readable JSON",
        "vocab": "vocab.json",
    }
    for name, directory in cases.items():
        result = runner.invoke(app, ["import", str(directory), "--out", str(tmp_path / name / "r")])
        assert result.exit_code == 2, (name, result.output)
        assert expected[name] in result.output, (name, result.output)
        assert "Traceback" not in result.output
        assert len(result.output.strip().splitlines()) == 1, (name, result.output)


@pytest.mark.parametrize(
    ("weight", "field"),
    [
        ("model.encoder.embed_positions.weight", "embed_positions"),
        ("final_logits_bias", "final_logits_bias"),
    ],
)
def test_weights_nmt_cannot_hold_are_refused(exported, weight, field, tmp_path) -> None:
    """Learned (non-sinusoidal) positions or an output bias have no place in nmt's model."""
    directory = shutil.copytree(exported, tmp_path / "changed")
    model = transformers.AutoModelForSeq2SeqLM.from_pretrained(str(directory))
    with torch.no_grad():
        model.state_dict()[weight].add_(0.01)
    model.save_pretrained(str(directory))
    result = runner.invoke(app, ["import", str(directory), "--out", str(tmp_path / "run")])
    assert result.exit_code == 2 and field in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1
