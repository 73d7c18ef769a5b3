"""Tests of the Transformer backbone: shapes, gradients, incremental decoding, masks.

Toy data uses pad 0, BOS 2, EOS 3; real tokens are drawn from 4..V-1.
"""

from __future__ import annotations

import pytest
import torch

from nmt.config import TransformerConfig
from nmt.data.batch import pad_sequences
from nmt.models.transformer import Transformer

PAD, BOS, EOS = 0, 2, 3
VOCAB = 20
VARIANTS = [(norm, tie) for norm in ("pre", "post") for tie in (True, False)]
IDS = [f"{norm}-{'tied' if tie else 'untied'}" for norm, tie in VARIANTS]


def make_model(norm: str = "pre", tie: bool = True, dropout: float = 0.1) -> Transformer:
    """Build a tiny model; dropout on so that eval-mode tests also check it is switched off."""
    torch.manual_seed(0)
    cfg = TransformerConfig(
        d_model=32,
        heads=2,
        ff_dim=64,
        encoder_layers=2,
        decoder_layers=2,
        dropout=dropout,
        attention_dropout=dropout,
        norm=norm,
        tie_embeddings=tie,
        max_positions=64,
    )
    return Transformer(cfg, VOCAB, VOCAB, PAD)


def pad_batch(seqs: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad token lists with PAD: ids (B, L) and mask (B, L), True on real tokens."""
    ids = pad_sequences(seqs, PAD)  # (B, L)
    return ids, ids != PAD


def toy_batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Three pairs of different lengths: src ends in EOS, tgt_in starts with BOS."""
    src, src_mask = pad_batch([[5, 6, 7, 8, EOS], [9, 4, EOS], [10, 11, 12, 13, 14, 15, EOS]])
    tgt_in, _ = pad_batch([[BOS, 7, 8, 9], [BOS, 12], [BOS, 4, 5, 6, 17, 18]])
    return src, src_mask, tgt_in


def run_incremental(
    model: Transformer, src: torch.Tensor, src_mask: torch.Tensor, tgt_in: torch.Tensor
) -> torch.Tensor:
    """Teacher-forced token-by-token decoding; log-probs stacked to (B, T, V)."""
    state = model.encode(src, src_mask)
    steps = []
    for t in range(tgt_in.size(1)):
        log_probs, state = model.decode_step(tgt_in[:, t], state)
        steps.append(log_probs)
    return torch.stack(steps, dim=1)


@pytest.mark.parametrize("norm,tie", VARIANTS, ids=IDS)
def test_shapes(norm: str, tie: bool) -> None:
    model = make_model(norm, tie).eval()
    src, src_mask, tgt_in = toy_batch()
    assert model(src, src_mask, tgt_in).shape == (3, tgt_in.size(1), VOCAB)
    state = model.encode(src, src_mask)
    assert state["memory"].shape == (3, src.size(1), 32)
    assert [k.shape for k, _ in state["self_kv"]] == [(3, 2, 0, 16)] * 2
    assert [v.shape for _, v in state["cross_kv"]] == [(3, 2, src.size(1), 16)] * 2
    log_probs, state = model.decode_step(tgt_in[:, 0], state)
    assert log_probs.shape == (3, VOCAB) and log_probs.dtype == torch.float32
    assert torch.allclose(log_probs.exp().sum(-1), torch.ones(3), atol=1e-5)
    assert state["self_kv"][0][0].shape == (3, 2, 1, 16)
    assert state["step"].tolist() == [1, 1, 1]
    assert "attention" not in state


@pytest.mark.parametrize("norm,tie", VARIANTS, ids=IDS)
def test_every_parameter_gets_gradient(norm: str, tie: bool) -> None:
    model = make_model(norm, tie).train()
    src, src_mask, tgt_in = toy_batch()
    logits = model(src, src_mask, tgt_in)
    gold = torch.randint(4, VOCAB, tgt_in.shape)
    torch.nn.functional.cross_entropy(logits.reshape(-1, VOCAB), gold.reshape(-1)).backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_tied_weights_are_shared_and_need_joint_vocab() -> None:
    model = make_model(tie=True)
    assert model.src_embed.table.weight is model.tgt_embed.table.weight is model.out.weight
    untied = make_model(tie=False)
    assert untied.src_embed.table.weight is not untied.tgt_embed.table.weight
    with pytest.raises(ValueError, match="tie_embeddings"):
        Transformer(TransformerConfig(d_model=32, heads=2), 20, 21, PAD)


@pytest.mark.parametrize("norm,tie", VARIANTS, ids=IDS)
def test_incremental_decoding_matches_forward(norm: str, tie: bool) -> None:
    model = make_model(norm, tie).eval()
    src, src_mask, tgt_in = toy_batch()
    with torch.no_grad():
        full = torch.log_softmax(model(src, src_mask, tgt_in), dim=-1)
        steps = run_incremental(model, src, src_mask, tgt_in)
    real = tgt_in != PAD
    torch.testing.assert_close(steps[real], full[real], atol=1e-5, rtol=0)


@pytest.mark.parametrize("norm,tie", VARIANTS, ids=IDS)
def test_padding_does_not_change_outputs(norm: str, tie: bool) -> None:
    model = make_model(norm, tie).eval()
    short_src, short_tgt = [6, 7, EOS], [BOS, 8, 9]
    alone = pad_batch([short_src]), pad_batch([short_tgt])[0]
    src, src_mask = pad_batch([short_src, [4, 5, 6, 7, 8, 9, 10, EOS]])
    tgt_in, _ = pad_batch([short_tgt, [BOS, 11, 12, 13, 14, 15]])
    with torch.no_grad():
        single = model(alone[0][0], alone[0][1], alone[1])[0]  # (3, V)
        batched = model(src, src_mask, tgt_in)[0, :3]  # (3, V)
        single_steps = run_incremental(model, *alone[0], alone[1])[0]
        batched_steps = run_incremental(model, src, src_mask, tgt_in)[0, :3]
    torch.testing.assert_close(batched, single, atol=1e-5, rtol=0)
    torch.testing.assert_close(batched_steps, single_steps, atol=1e-5, rtol=0)


@pytest.mark.parametrize("norm,tie", VARIANTS, ids=IDS)
@pytest.mark.parametrize("index", [[2, 0, 1], [1, 1, 0, 2]], ids=["permute", "duplicate"])
def test_reorder_state_follows_rows(norm: str, tie: bool, index: list[int]) -> None:
    model = make_model(norm, tie).eval()
    model.keep_attention = True
    src, src_mask, tgt_in = toy_batch()
    idx = torch.tensor(index)
    with torch.no_grad():
        state = model.encode(src, src_mask)
        _, state = model.decode_step(tgt_in[:, 0], state)
        _, state = model.decode_step(tgt_in[:, 1], state)
        reference, ref_state = model.decode_step(tgt_in[:, 2], state)
        moved = model.reorder_state(state, idx)
        reordered, new_state = model.decode_step(tgt_in[idx, 2], moved)
    torch.testing.assert_close(reordered, reference[idx], atol=1e-5, rtol=0)
    torch.testing.assert_close(new_state["attention"], ref_state["attention"][idx])
    assert new_state["step"].tolist() == [3] * len(index)


@pytest.mark.parametrize("norm,tie", VARIANTS, ids=IDS)
def test_bf16_autocast_gives_finite_fp32_log_probs(norm: str, tie: bool) -> None:
    model = make_model(norm, tie).eval()
    src, src_mask, tgt_in = toy_batch()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(src, src_mask, tgt_in)
        steps = run_incremental(model, src, src_mask, tgt_in)
    assert torch.isfinite(logits).all()
    assert steps.dtype == torch.float32 and torch.isfinite(steps).all()
    assert torch.allclose(steps.exp().sum(-1), torch.ones(steps.shape[:2]), atol=1e-4)


def test_fully_padded_source_row_stays_finite() -> None:
    model = make_model().train()
    src, src_mask = pad_batch([[5, 6, EOS], [PAD]])
    tgt_in, _ = pad_batch([[BOS, 7], [BOS]])
    logits = model(src, src_mask, tgt_in)
    logits.sum().backward()
    assert torch.isfinite(logits).all()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("norm,tie", VARIANTS, ids=IDS)
def test_keep_attention_rows_are_distributions(norm: str, tie: bool) -> None:
    model = make_model(norm, tie).eval()
    src, src_mask, tgt_in = toy_batch()
    with torch.no_grad():
        plain, _ = model.decode_step(tgt_in[:, 0], model.encode(src, src_mask))
        model.keep_attention = True
        kept, state = model.decode_step(tgt_in[:, 0], model.encode(src, src_mask))
    attention = state["attention"]
    assert attention.shape == src.shape
    assert torch.allclose(attention.sum(-1), torch.ones(3), atol=1e-5)
    assert (attention[~src_mask] == 0).all()
    torch.testing.assert_close(kept, plain, atol=1e-5, rtol=0)


def test_too_long_input_is_rejected() -> None:
    model = make_model().eval()
    src = torch.full((1, 65), 5)
    with pytest.raises(ValueError, match="max_positions"):
        model(src, src != PAD, src)
