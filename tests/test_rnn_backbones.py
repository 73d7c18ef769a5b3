"""Tests of the recurrent backbones: LSTMSeq2Seq (Sutskever) and AttentionSeq2Seq.

Each model is checked against the :class:`nmt.models.base.Seq2Seq` contract that training
and search rely on: teacher forcing equals step-by-step decoding, padding changes nothing,
``reorder_state`` follows beam search, and bf16 autocast gives finite float32 log-probs.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from torch import Tensor

from nmt.config import AttentionConfig, LSTMConfig, ModelConfig
from nmt.data.batch import pad_sequences
from nmt.models import build_model
from nmt.models.attention import AttentionSeq2Seq
from nmt.models.base import Seq2Seq
from nmt.models.lstm import LSTMSeq2Seq
from nmt.models.rnn_common import make_rnn, reverse_padded

PAD, BOS, EOS = 0, 2, 3
SRC_V, TGT_V = 17, 13
ATOL = 1e-5

# (cell, score, bidirectional, input_feeding, layers): every cell x score pair once, with
# both values of each flag and both layer counts.
ATTENTION_VARIANTS = [
    ("rnn", "bahdanau", True, True, 1),
    ("rnn", "dot", False, False, 2),
    ("rnn", "general", False, True, 1),
    ("gru", "bahdanau", False, True, 2),
    ("gru", "dot", True, True, 2),
    ("gru", "general", True, False, 1),
    ("lstm", "bahdanau", True, False, 2),
    ("lstm", "dot", False, True, 1),
    ("lstm", "general", True, True, 2),
]
LSTM_VARIANTS = [(1, True), (2, True), (2, False)]  # (layers, reverse_source)

VARIANTS = [pytest.param(("lstm", v), id=f"lstm-L{v[0]}-rev{int(v[1])}") for v in LSTM_VARIANTS]
VARIANTS += [
    pytest.param(("attention", v), id=f"{v[0]}-{v[1]}-bi{int(v[2])}-feed{int(v[3])}-L{v[4]}")
    for v in ATTENTION_VARIANTS
]


def make_model(variant: tuple) -> Seq2Seq:
    kind, v = variant
    torch.manual_seed(0)
    if kind == "lstm":
        cfg = LSTMConfig(emb_dim=8, hidden=12, layers=v[0], dropout=0.1, reverse_source=v[1])
        return LSTMSeq2Seq(cfg, SRC_V, TGT_V, PAD)
    cell, score, bidirectional, feeding, layers = v
    cfg = AttentionConfig(
        cell=cell,
        emb_dim=8,
        hidden=12,
        layers=layers,
        bidirectional=bidirectional,
        attention=score,
        input_feeding=feeding,
        dropout=0.1,
    )
    return AttentionSeq2Seq(cfg, SRC_V, TGT_V, PAD)


def pad_batch(rows: list[list[int]]) -> tuple[Tensor, Tensor]:
    """Right-pad token lists with PAD: ids (B, L) and mask (B, L), True on real tokens."""
    ids = pad_sequences(rows, PAD)  # (B, L)
    return ids, ids != PAD


def toy_pair(src_lens: list[int], tgt_lens: list[int], seed: int = 1) -> tuple[Tensor, ...]:
    """Random sources ending with EOS, decoder inputs BOS + target; all right-padded."""
    g = torch.Generator().manual_seed(seed)
    srcs = [[*torch.randint(4, SRC_V, (n - 1,), generator=g).tolist(), EOS] for n in src_lens]
    tgts = [[BOS, *torch.randint(4, TGT_V, (n - 1,), generator=g).tolist()] for n in tgt_lens]
    src, src_mask = pad_batch(srcs)
    tgt_in, _ = pad_batch(tgts)
    return src, src_mask, tgt_in


def step_by_step(model: Seq2Seq, src: Tensor, src_mask: Tensor, tgt_in: Tensor) -> Tensor:
    """Teacher-forced decoding through encode + decode_step: log-probs (B, T, V)."""
    state = model.encode(src, src_mask)
    out = []
    for t in range(tgt_in.size(1)):
        log_probs, state = model.decode_step(tgt_in[:, t], state)
        out.append(log_probs)
    return torch.stack(out, dim=1)


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """Tiny models gain nothing from intra-op threads, which only spin on a busy CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(params=VARIANTS)
def model(request: pytest.FixtureRequest) -> Seq2Seq:
    return make_model(request.param)


def test_shapes_and_state(model: Seq2Seq) -> None:
    """Shapes/dtypes of the contract; batch-first state; attention weights are a distribution."""
    src, src_mask, tgt_in = toy_pair([5, 3, 4], [4, 6, 2])
    assert model.pad_id == PAD
    assert model(src, src_mask, tgt_in).shape == (3, 6, TGT_V)
    state = model.encode(src, src_mask)
    log_probs, state = model.decode_step(tgt_in[:, 0], state)
    assert log_probs.shape == (3, TGT_V) and log_probs.dtype == torch.float32
    assert torch.allclose(log_probs.exp().sum(-1), torch.ones(3), atol=1e-5)
    for value in state.values():
        assert value is None or value.size(0) == 3  # batch first, so reorder_state works
    if isinstance(model, AttentionSeq2Seq):
        weights = state["attention"]  # (B, S)
        assert weights.shape == src.shape
        assert torch.allclose(weights.sum(-1), torch.ones(3), atol=1e-5)
        assert (weights[~src_mask] == 0).all()


def test_every_parameter_gets_gradient(model: Seq2Seq) -> None:
    """No dead parameter: each one influences the loss."""
    model.train()
    src, src_mask, tgt_in = toy_pair([5, 3, 4], [4, 6, 2])
    logits = model(src, src_mask, tgt_in)
    gold = torch.randint(4, TGT_V, tgt_in.shape, generator=torch.Generator().manual_seed(3))
    torch.nn.functional.cross_entropy(logits.flatten(0, 1), gold.flatten()).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"no gradient for {name}"


def test_decode_step_matches_forward(model: Seq2Seq) -> None:
    """Training (teacher forcing) and search (decode_step) must compute the same model."""
    model.eval()
    src, src_mask, tgt_in = toy_pair([5, 3, 4, 6], [4, 6, 2, 5])
    with torch.no_grad():
        forced = torch.log_softmax(model(src, src_mask, tgt_in).float(), dim=-1)
        stepped = step_by_step(model, src, src_mask, tgt_in)
    torch.testing.assert_close(stepped, forced, atol=ATOL, rtol=0)


def test_padding_does_not_change_outputs(model: Seq2Seq) -> None:
    """A sentence's outputs do not depend on the longer sentences it is batched with."""
    model.eval()
    src, src_mask, tgt_in = toy_pair([4, 7], [3, 6])
    with torch.no_grad():
        batched = model(src, src_mask, tgt_in)  # row 0 is padded in source and target
        alone = model(src[:1, :4], src_mask[:1, :4], tgt_in[:1, :3])
        stepped = step_by_step(model, src, src_mask, tgt_in)[:1, :3]
    torch.testing.assert_close(batched[:1, :3], alone, atol=ATOL, rtol=0)
    torch.testing.assert_close(stepped, torch.log_softmax(alone, dim=-1), atol=ATOL, rtol=0)


def test_reorder_state_permutes_outputs(model: Seq2Seq) -> None:
    """Beam search reorders/duplicates rows of the state; outputs must follow."""
    model.eval()
    src, src_mask, tgt_in = toy_pair([5, 3, 4], [4, 4, 4])
    index = torch.tensor([2, 0, 0, 1])  # a permutation with a duplicate, as beam search does
    with torch.no_grad():
        state = model.encode(src, src_mask)
        for t in range(2):
            _, state = model.decode_step(tgt_in[:, t], state)
        expected, _ = model.decode_step(tgt_in[:, 2], state)
        got, _ = model.decode_step(tgt_in[index, 2], model.reorder_state(state, index))
    torch.testing.assert_close(got, expected[index], atol=ATOL, rtol=0)


def test_bf16_autocast(model: Seq2Seq) -> None:
    """Training runs under CPU bf16 autocast; search still gets finite float32 log-probs."""
    src, src_mask, tgt_in = toy_pair([5, 3, 4], [4, 6, 2])
    model.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(src, src_mask, tgt_in)
    assert torch.isfinite(logits.float()).all()
    logits.float().logsumexp(-1).mean().backward()
    model.eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        log_probs = step_by_step(model, src, src_mask, tgt_in)
    assert log_probs.dtype == torch.float32 and torch.isfinite(log_probs).all()


def test_reverse_source_reverses_real_tokens_only() -> None:
    """Sutskever et al. 2014, sec. 3.3 reversal keeps padding on the right."""
    tokens, mask = pad_batch([[5, 6, 7, EOS], [8, EOS]])
    expected = torch.tensor([[EOS, 7, 6, 5], [EOS, 8, PAD, PAD]])
    assert torch.equal(reverse_padded(tokens, mask), expected)


def test_build_model_and_bad_choices() -> None:
    """The registry builds both backbones; unknown cell/score names fail loudly."""
    cfg = ModelConfig(type="attention", attention=AttentionConfig(emb_dim=8, hidden=12))
    assert isinstance(build_model(cfg, SRC_V, TGT_V, PAD), AttentionSeq2Seq)
    cfg = ModelConfig(type="lstm", lstm=LSTMConfig(emb_dim=8, hidden=12))
    assert isinstance(build_model(cfg, SRC_V, TGT_V, PAD), LSTMSeq2Seq)
    with pytest.raises(ValueError, match="cell"):
        make_rnn("elman", 4, 4, 1)
    with pytest.raises(ValueError, match="attention"):
        AttentionSeq2Seq(AttentionConfig(attention="cosine"), SRC_V, TGT_V, PAD)
