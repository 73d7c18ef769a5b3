"""Sampling (``nmt translate --sample topk:K|topp:P --temperature T --seed S``)."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from nmt.artifacts.checkpoint import save_checkpoint
from nmt.cli.app import app
from nmt.config import SearchConfig
from nmt.data.batch import pad_sequences
from nmt.errors import UsageError
from nmt.inference.search import Sampling, SearchLimits, greedy_search, sample, search
from nmt.inference.translator import Translator
from nmt.models.base import Seq2Seq, State
from tests.conftest import BACKBONES, tiny_config, tiny_model

SENTENCES = ["Zwei junge Männer stehen am Strand.", "Ein Hund rennt.", "Eine Frau liest."]
PROBS = [0.5, 0.3, 0.2]  # first-token distribution of FirstTokenModel (tokens 0, 1, 2)
EOS = 3
runner = CliRunner()


class FirstTokenModel(Seq2Seq):
    """A model whose first output token has the distribution PROBS, then EOS for sure."""

    pad_id = 4

    def encode(self, src: torch.Tensor, src_mask: torch.Tensor) -> State:
        return {"step": torch.zeros(src.size(0), dtype=torch.long)}

    def decode_step(self, prev: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        first = torch.log(torch.tensor(PROBS + [0.0, 0.0]))  # (V,) EOS and pad impossible
        then = torch.full((5,), float("-inf")).index_fill(0, torch.tensor([EOS]), 0.0)
        at_start = (state["step"] == 0).unsqueeze(1)  # (B, 1)
        return torch.where(at_start, first, then), {"step": state["step"] + 1}  # (B, V)


def first_token_frequencies(sampling: Sampling, n: int = 3000) -> list[float]:
    src = torch.zeros(1, 2, dtype=torch.long)
    limits = SearchLimits(bos_id=4, eos_id=EOS, max_len_a=0, max_len_b=5)
    gen = torch.Generator().manual_seed(0)
    hyps = sample(FirstTokenModel(), src, src != 4, limits, sampling, nbest=n, generator=gen)[0]
    assert len(hyps) == n and all(len(h.tokens) == 1 for h in hyps)
    for h in hyps:  # the model's log-probability, not the tempered or truncated one
        assert h.log_prob == pytest.approx(math.log(PROBS[h.tokens[0]]))
    counts = Counter(h.tokens[0] for h in hyps)
    return [counts[t] / n for t in range(3)]


@pytest.mark.parametrize(
    ("sampling", "expected"),
    [
        (Sampling("topk", 3), PROBS),
        (Sampling("topk", 2), [0.5 / 0.8, 0.3 / 0.8, 0.0]),
        (Sampling("topp", 0.6), [0.5 / 0.8, 0.3 / 0.8, 0.0]),  # 0.5 < 0.6: one more token
        (Sampling("topp", 0.45), [1.0, 0.0, 0.0]),  # the first token alone reaches 0.45
        (Sampling("topk", 3, temperature=0.5), [p * p / 0.38 for p in PROBS]),  # p^(1/T)
        (Sampling("topp", 1.0, temperature=2.0), [math.sqrt(p) for p in PROBS]),
    ],
)
def test_draws_follow_the_truncated_tempered_distribution(sampling, expected) -> None:
    expected = [e / sum(expected) for e in expected]
    assert first_token_frequencies(sampling) == pytest.approx(expected, abs=0.04)


def test_nbest_samples_are_sorted_by_score() -> None:
    src = torch.zeros(2, 2, dtype=torch.long)
    limits = SearchLimits(bos_id=4, eos_id=EOS, max_len_a=0, max_len_b=5)
    lists = sample(FirstTokenModel(), src, src != 4, limits, Sampling("topk", 3), nbest=6)
    assert [len(hyps) for hyps in lists] == [6, 6]
    for hyps in lists:
        assert [h.score for h in hyps] == sorted((h.score for h in hyps), reverse=True)


@pytest.mark.parametrize("spec", [("topk", 0), ("topk", 2.5), ("topp", 0), ("topp", 1.5)])
def test_bad_sampling_settings_are_usage_errors(spec: tuple[str, float]) -> None:
    with pytest.raises(UsageError):
        Sampling(*spec)
    with pytest.raises(UsageError, match="temperature"):
        Sampling("topk", 5, temperature=0)


@pytest.mark.parametrize("backbone", BACKBONES)
def test_top1_sampling_is_greedy_search(backbone: str, tok) -> None:
    model = tiny_model(backbone, tok).eval()
    src = pad_sequences(tok.encode_src(SENTENCES), tok.pad_id)  # (B, S)
    mask = src != tok.pad_id
    limits = SearchLimits(tok.bos_id, tok.eos_id, 1.0, 4)
    greedy = greedy_search(model, src, mask, limits)
    drawn = search(model, src, mask, limits, sampling=Sampling("topk", 1, temperature=1.7))
    assert [h[0].tokens for h in drawn] == [h.tokens for h in greedy]
    assert [h[0].log_prob for h in drawn] == pytest.approx([h.log_prob for h in greedy])


def _translator(model, tok, seed: int, nbest: int = 1) -> Translator:
    cfg = SearchConfig(beam=1, nbest=nbest, max_len_a=1.0, max_len_b=4, batch_size=2)
    return Translator(model, tok, cfg, sampling=Sampling("topp", 0.95), seed=seed)


def test_same_seed_same_samples(tok) -> None:
    model = tiny_model("transformer", tok).eval()
    first = _translator(model, tok, seed=7).translate_lines(SENTENCES)
    assert _translator(model, tok, seed=7).translate_lines(SENTENCES) == first
    assert _translator(model, tok, seed=8).translate_lines(SENTENCES) != first
    greedy = Translator(model, tok, SearchConfig(beam=1, max_len_a=1.0, max_len_b=4))
    assert greedy.translate_lines(SENTENCES) != first


def test_cli_sampling(tmp_path: Path, tok) -> None:
    ckpt = tmp_path / "m.safetensors"
    save_checkpoint(ckpt, tiny_model("transformer", tok), tok, tiny_config("transformer"))
    src = "\n".join(SENTENCES) + "\n"
    args = ["translate", str(ckpt), "--sample", "topk:20", "--temperature", "0.9", "--seed", "3"]
    runs = [runner.invoke(app, [*args, "--nbest", "4"], input=src) for _ in range(2)]
    assert runs[0].exit_code == 0, runs[0].output
    assert runs[0].stdout == runs[1].stdout
    lines = runs[0].stdout.splitlines()
    assert [line.split(" ||| ")[0] for line in lines] == [
        str(i) for i in range(3) for _ in range(4)
    ]
    for flags, message in [
        (["--sample", "top:3"], "sampling method must be topk or topp"),
        (["--sample", "topk:x"], "--sample must be topk:K or topp:P"),
        (["--sample", "topk:3", "--beam", "4"], "does not combine with --beam"),
        (["--temperature", "0.5"], "--temperature applies to sampling"),
        (["--seed", "1"], "--seed applies to sampling"),
    ]:
        result = runner.invoke(app, ["translate", str(ckpt), *flags], input=src)
        assert result.exit_code == 2 and message in result.output, result.output
