"""Checkpoint averaging (``nmt average``) and ensemble decoding (``nmt translate M1 M2``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from nmt.artifacts.average import average_checkpoints, save_step_checkpoint, step_checkpoints
from nmt.artifacts.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from nmt.cli.app import app
from nmt.inference.ensemble import Ensemble, check_same_tokenizer, load_models
from nmt.inference.search import SearchLimits, beam_search, greedy_search
from nmt.tokenizer import Tokenizer, train_sentencepiece
from tests.conftest import BACKBONES, FIXTURES, REPO, tiny_config, tiny_model

SENTENCES = ["Zwei junge Männer stehen am Strand.", "Ein Hund rennt.", "Eine Frau liest."]
runner = CliRunner()


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    """Tiny models gain nothing from threads; on a busy machine 2 threads only wait."""
    torch.set_num_threads(1)


def _checkpoint(path: Path, backbone: str, tok: Tokenizer, seed: int) -> Path:
    save_checkpoint(path, tiny_model(backbone, tok, seed), tok, tiny_config(backbone))
    return path


def _src(tok: Tokenizer) -> tuple[torch.Tensor, torch.Tensor]:
    from nmt.data.batch import pad_sequences

    src = pad_sequences(tok.encode_src(SENTENCES), tok.pad_id)  # (B, S)
    return src, src != tok.pad_id


# --- averaging ---------------------------------------------------------------------------------


def test_average_of_two_checkpoints_is_the_mean_of_their_weights(tmp_path: Path, tok) -> None:
    a = _checkpoint(tmp_path / "a.safetensors", "transformer", tok, seed=0)
    b = _checkpoint(tmp_path / "b.safetensors", "transformer", tok, seed=1)
    out = tmp_path / "avg.safetensors"
    result = runner.invoke(app, ["average", str(a), str(b), "-o", str(out)])
    assert result.exit_code == 0, result.output
    avg, avg_tok, _, meta = load_checkpoint(out)  # a normal, loadable nmt checkpoint
    wa, wb = load_checkpoint(a)[0].state_dict(), load_checkpoint(b)[0].state_dict()
    assert avg_tok.src_proto == tok.src_proto and meta["averaged"] == [str(a), str(b)]
    assert any(not torch.equal(wa[n], wb[n]) for n in wa)  # two different models
    for name, value in avg.state_dict().items():
        assert torch.equal(value, ((wa[name].double() + wb[name].double()) / 2).float()), name


def test_average_refuses_different_models(tmp_path: Path, tok) -> None:
    a = _checkpoint(tmp_path / "a.safetensors", "transformer", tok, seed=0)
    b = _checkpoint(tmp_path / "b.safetensors", "lstm", tok, seed=0)
    with pytest.raises(CheckpointError, match="only checkpoints of the same model"):
        average_checkpoints([a, b])


def test_step_checkpoints_are_pruned_to_the_newest(tmp_path: Path, tok) -> None:
    model, cfg = tiny_model("lstm", tok), tiny_config("lstm")
    for step in (2, 4, 10, 6):
        save_step_checkpoint(tmp_path, model, tok, cfg, {"step": step}, keep=2)
    assert [p.name for p in step_checkpoints(tmp_path)] == [
        "step_6.safetensors",
        "step_10.safetensors",
    ]
    assert not list((tmp_path / "ckpt").glob(".*tmp"))  # atomic writes leave no temp files


def test_training_keeps_step_checkpoints_and_averages_the_last(tmp_path: Path) -> None:
    run = tmp_path / "run"
    sets = [f"data.dir={FIXTURES}", f"tokenizer.model={FIXTURES}/spm.tiny", "train.max_steps=6"]
    sets += ["train.valid_every=2", "train.keep_checkpoints=2", "train.valid_max_sentences=4"]
    args = ["train", str(REPO / "configs/tiny/lstm.yaml"), "--out", str(run), "--device", "cpu"]
    result = runner.invoke(app, args + [x for s in sets for x in ("--set", s)])
    assert result.exit_code == 0, result.output
    kept = step_checkpoints(run)
    assert [p.name for p in kept] == ["step_4.safetensors", "step_6.safetensors"]
    out = tmp_path / "avg.safetensors"
    result = runner.invoke(app, ["average", str(run), "--last", "2", "-o", str(out)])
    assert result.exit_code == 0 and "averaged 2 checkpoints" in result.output
    w4, w6 = (load_checkpoint(p)[0].state_dict() for p in kept)
    for name, value in load_checkpoint(out)[0].state_dict().items():
        assert torch.allclose(value, (w4[name] + w6[name]) / 2, atol=1e-7), name
    result = runner.invoke(app, ["average", str(tmp_path), "-o", str(out)])
    assert result.exit_code == 2 and "train.keep_checkpoints" in result.output


# --- ensembles ---------------------------------------------------------------------------------


@pytest.mark.parametrize("backbone", BACKBONES)
def test_ensemble_of_a_model_with_itself_is_the_model(backbone: str, tok) -> None:
    model = tiny_model(backbone, tok).eval()
    pair = Ensemble([model, model]).eval()
    src, mask = _src(tok)
    prev = torch.full((src.size(0),), tok.bos_id)
    alone_lp, _ = model.decode_step(prev, model.encode(src, mask))  # (B, V)
    assert torch.equal(pair.decode_step(prev, pair.encode(src, mask))[0], alone_lp)  # exact
    limits = SearchLimits(tok.bos_id, tok.eos_id, 1.5, 5)
    assert greedy_search(pair, src, mask, limits) == greedy_search(model, src, mask, limits)
    alone = beam_search(model, src, mask, limits, beam=3, nbest=3)
    assert beam_search(pair, src, mask, limits, beam=3, nbest=3) == alone


def test_ensemble_averages_probabilities_and_reorders_each_member(tok) -> None:
    a, b = tiny_model("transformer", tok, 0).eval(), tiny_model("attention", tok, 1).eval()
    src, mask = _src(tok)
    prev = torch.full((src.size(0),), tok.bos_id)
    pair = Ensemble([a, b])
    mixed, state = pair.decode_step(prev, pair.encode(src, mask))  # (B, V)
    lp_a, state_a = a.decode_step(prev, a.encode(src, mask))
    lp_b, state_b = b.decode_step(prev, b.encode(src, mask))
    assert torch.allclose(mixed, torch.log((lp_a.exp() + lp_b.exp()) / 2), atol=1e-5)
    assert torch.allclose(mixed.exp().sum(-1), torch.ones(src.size(0)), atol=1e-5)
    # beam bookkeeping: keep rows 2 and 0, then step again
    index, nxt = torch.tensor([2, 0]), torch.tensor([5, 7])
    again, _ = pair.decode_step(nxt, pair.reorder_state(state, index))  # (2, V)
    lp_a, _ = a.decode_step(nxt, a.reorder_state(state_a, index))
    lp_b, _ = b.decode_step(nxt, b.reorder_state(state_b, index))
    assert torch.allclose(again, torch.log((lp_a.exp() + lp_b.exp()) / 2), atol=1e-5)


def test_ensemble_refuses_another_tokenizer(tmp_path: Path, tok) -> None:
    files = [FIXTURES / "train.de", FIXTURES / "train.en"]
    other = Tokenizer(train_sentencepiece(files, tmp_path / "other", 300, "bpe").read_bytes())
    with pytest.raises(CheckpointError, match="different tokenizer"):
        check_same_tokenizer([tok, other], ["a", "b"])
    a = _checkpoint(tmp_path / "a.safetensors", "lstm", tok, seed=0)
    b = _checkpoint(tmp_path / "b.safetensors", "lstm", other, seed=0)
    result = runner.invoke(app, ["translate", str(a), str(b), "-i", str(FIXTURES / "test.de")])
    assert result.exit_code == 2 and "different tokenizer" in result.output


def test_translate_cli_ensemble_of_a_model_with_itself(tmp_path: Path, tok) -> None:
    ckpt = _checkpoint(tmp_path / "m.safetensors", "transformer", tok, seed=0)
    src = tmp_path / "src.de"
    src.write_text("\n".join(SENTENCES) + "\n", encoding="utf-8")
    outputs = []
    for models in ([ckpt], [ckpt, ckpt]):
        out = tmp_path / f"out{len(models)}.en"
        args = ["translate", *map(str, models), "-i", str(src), "-o", str(out), "--beam", "2"]
        result = runner.invoke(app, [*args, "--device", "cpu"])
        assert result.exit_code == 0, result.output
        outputs.append(out.read_text(encoding="utf-8"))
    assert outputs[0] == outputs[1] and len(outputs[0].splitlines()) == len(SENTENCES)
    model, _, _ = load_models([ckpt, ckpt])
    assert isinstance(model, Ensemble) and len(model.members) == 2
