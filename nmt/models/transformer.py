"""Transformer encoder-decoder (Vaswani et al. 2017, "Attention Is All You Need").

Built from plain ``nn.Linear`` layers rather than ``nn.Transformer`` so that the decoder
can run incrementally: :meth:`Transformer.decode_step` feeds one token and keeps
per-layer key/value caches, so a search step costs O(t) instead of re-running the whole
prefix. Attention itself uses the fused ``scaled_dot_product_attention`` kernel.

Decoder state (every tensor batch-first, so the default ``reorder_state`` works):

- ``memory``: (B, S, D) encoder output; ``memory_mask``: (B, S) bool, True on real tokens.
- ``cross_kv``: per decoder layer, ``(k, v)`` each (B, H, S, Dh). They depend only on
  the source, so they are projected once in :meth:`Transformer.encode`.
- ``self_kv``: per decoder layer, ``(k, v)`` each (B, H, t, Dh); t = tokens fed so far.
- ``step``: (B,) long, position of the next token. Equal in every row, but kept per row
  so that it is reordered like everything else.
- ``attention`` (only while ``keep_attention`` is True): (B, S) cross-attention of the
  last decoder layer at the last step, averaged over heads.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from nmt.config import TransformerConfig
from nmt.models.base import Seq2Seq, State, log_softmax_fp32
from nmt.models.dropout import Dropout
from nmt.models.multihead import (
    KV,
    CrossAttention,
    SelfAttention,
    init_linear,
    key_padding_mask,
)


def sinusoidal_table(length: int, dim: int) -> Tensor:
    """Positional encodings of sec. 3.5: PE(p, 2i) = sin(p / 10000^(2i/d)), PE(p, 2i+1) = cos.

    Fixed sinusoids need no training and let relative offsets be linear functions of
    the encodings (sec. 3.5).
    """
    pos = torch.arange(length, dtype=torch.float32).unsqueeze(1)  # (L, 1)
    exponent = torch.arange(0, dim, 2, dtype=torch.float32) / dim  # (ceil(D/2),)
    angle = pos / 10000.0**exponent  # (L, ceil(D/2))
    table = torch.zeros(length, dim)  # (L, D)
    table[:, 0::2] = torch.sin(angle)
    table[:, 1::2] = torch.cos(angle[:, : dim // 2])
    return table


class FeedForward(nn.Module):
    """Position-wise feed-forward network, eq. 2: FFN(x) = max(0, x W1 + b1) W2 + b2."""

    def __init__(self, d_model: int, ff_dim: int) -> None:
        super().__init__()
        self.inner = nn.Linear(d_model, ff_dim)
        self.outer = nn.Linear(ff_dim, d_model)
        init_linear(self.inner)
        init_linear(self.outer)

    def forward(self, x: Tensor) -> Tensor:
        """x (B, T, D) -> (B, T, D), each position independently."""
        return self.outer(torch.relu(self.inner(x)))  # (B, T, D)


class Residual(nn.Module):
    """Residual connection, residual dropout (sec. 5.4) and LayerNorm around one sublayer.

    ``post`` is the paper's LayerNorm(x + Dropout(Sublayer(x))) (sec. 3.1); ``pre`` is
    x + Dropout(Sublayer(LayerNorm(x))) (Xiong et al. 2020), which keeps an identity path
    through the stack and trains stably with less warm-up; its stacks end in a LayerNorm.
    Use as ``after(x, sublayer(before(x)))``.
    """

    def __init__(self, d_model: int, dropout: float, pre: bool) -> None:
        super().__init__()
        self.pre = pre
        self.norm = nn.LayerNorm(d_model)
        self.drop = Dropout(dropout)

    def before(self, x: Tensor) -> Tensor:
        """The sublayer's input: normalised first in the pre-norm placement."""
        return self.norm(x) if self.pre else x

    def after(self, x: Tensor, y: Tensor) -> Tensor:
        """Add the dropped-out sublayer output ``y`` to ``x``; normalise after (post-norm)."""
        x = self.drop.add(x, y)  # (B, T, D) = x + Dropout(y)
        return x if self.pre else self.norm(x)


class EncoderLayer(nn.Module):
    """Self-attention then feed-forward, each wrapped in a :class:`Residual` (sec. 3.1)."""

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        pre = cfg.norm == "pre"
        self.attn = SelfAttention(cfg.d_model, cfg.heads, cfg.attention_dropout)
        self.attn_res = Residual(cfg.d_model, cfg.dropout, pre)
        self.ff = FeedForward(cfg.d_model, cfg.ff_dim)
        self.ff_res = Residual(cfg.d_model, cfg.dropout, pre)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """x (B, S, D), mask (B, 1, 1, S) -> (B, S, D)."""
        y, _ = self.attn(self.attn_res.before(x), mask=mask)
        x = self.attn_res.after(x, y)  # (B, S, D)
        return self.ff_res.after(x, self.ff(self.ff_res.before(x)))  # (B, S, D)


class DecoderLayer(nn.Module):
    """Masked self-attention, encoder-decoder attention, feed-forward (sec. 3.1).

    Without ``cache`` it processes a whole prefix with a causal mask (training); with a
    cache it processes one new position and returns the extended cache (search).
    """

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        pre = cfg.norm == "pre"
        self.self_attn = SelfAttention(cfg.d_model, cfg.heads, cfg.attention_dropout)
        self.self_res = Residual(cfg.d_model, cfg.dropout, pre)
        self.cross_attn = CrossAttention(cfg.d_model, cfg.heads, cfg.attention_dropout)
        self.cross_res = Residual(cfg.d_model, cfg.dropout, pre)
        self.ff = FeedForward(cfg.d_model, cfg.ff_dim)
        self.ff_res = Residual(cfg.d_model, cfg.dropout, pre)

    def forward(
        self,
        x: Tensor,
        cross_kv: KV,
        cross_mask: Tensor,
        cache: KV | None = None,
        need_weights: bool = False,
    ) -> tuple[Tensor, KV, Tensor | None]:
        """x (B, T, D) -> (B, T, D), self-attention keys/values, cross weights or None."""
        causal = cache is None
        y, cache = self.self_attn(self.self_res.before(x), causal=causal, cache=cache)
        x = self.self_res.after(x, y)  # (B, T, D)
        h = self.cross_res.before(x)
        y, weights = self.cross_attn(h, cross_kv, cross_mask, need_weights)
        x = self.cross_res.after(x, y)  # (B, T, D)
        x = self.ff_res.after(x, self.ff(self.ff_res.before(x)))  # (B, T, D)
        return x, cache, weights


class Embedder(nn.Module):
    """Token embedding * sqrt(d_model) (sec. 3.4) + sinusoidal position (sec. 3.5), dropout.

    ``table`` may be shared between source and target (tied embeddings, sec. 3.4).
    """

    def __init__(self, table: nn.Embedding, positions: Tensor, dropout: float) -> None:
        super().__init__()
        self.table = table
        self.scale = math.sqrt(table.embedding_dim)
        self.register_buffer("positions", positions, persistent=False)  # (P, D)
        self.drop = Dropout(dropout)

    def forward(self, tokens: Tensor, positions: Tensor) -> Tensor:
        """tokens (B, T) with positions (T,), or tokens (B,) with positions (B,)."""
        if tokens.dim() == 2 and tokens.size(1) > self.positions.size(0):
            raise ValueError(
                f"sequence of {tokens.size(1)} tokens exceeds max_positions "
                f"({self.positions.size(0)})"
            )
        x = self.table(tokens) * self.scale + self.positions[positions]  # (B, T, D) or (B, D)
        return self.drop(x)


class Encoder(nn.Module):
    """Stack of encoder layers (sec. 3.1), ending in a LayerNorm when pre-norm."""

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.layers = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.encoder_layers))
        self.norm = nn.LayerNorm(cfg.d_model) if cfg.norm == "pre" else nn.Identity()

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """x (B, S, D), mask (B, 1, 1, S) -> memory (B, S, D)."""
        for layer in self.layers:
            x = layer(x, mask)  # (B, S, D)
        return self.norm(x)


class Decoder(nn.Module):
    """Stack of decoder layers (sec. 3.1), ending in a LayerNorm when pre-norm."""

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.decoder_layers))
        self.norm = nn.LayerNorm(cfg.d_model) if cfg.norm == "pre" else nn.Identity()

    def project_memory(self, memory: Tensor) -> list[KV]:
        """Each layer's cross-attention keys/values, each (B, H, S, Dh)."""
        return [layer.cross_attn.project_memory(memory) for layer in self.layers]

    def forward(
        self,
        x: Tensor,
        cross_kv: list[KV],
        mask: Tensor,
        caches: list[KV] | None = None,
        need_weights: bool = False,
    ) -> tuple[Tensor, list[KV], Tensor | None]:
        """x (B, T, D) -> (B, T, D), per-layer self-attention keys/values, last-layer
        cross-attention weights (B, H, T, S) if ``need_weights``.

        Without ``caches`` the whole prefix is run under a causal mask; with them, x is
        the single newest position (T = 1).
        """
        new_caches, weights = [], None
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            cache = None if caches is None else caches[i]
            x, cache, weights = layer(x, cross_kv[i], mask, cache, need_weights and i == last)
            new_caches.append(cache)
        return self.norm(x), new_caches, weights


class Transformer(Seq2Seq):
    """Encoder-decoder Transformer (Vaswani et al. 2017) with incremental decoding.

    With :meth:`report_attention` on, :meth:`decode_step` also stores ``state["attention"]``,
    the last layer's cross-attention averaged over heads (slower: that layer then bypasses
    the fused kernel).
    """

    def __init__(self, cfg: TransformerConfig, src_vocab: int, tgt_vocab: int, pad_id: int) -> None:
        super().__init__()
        check_config(cfg, src_vocab, tgt_vocab)
        self.pad_id = pad_id
        self.max_positions = cfg.max_positions
        self.heads = cfg.heads
        positions = sinusoidal_table(cfg.max_positions, cfg.d_model)  # (P, D)
        src_table = make_embedding(src_vocab, cfg.d_model)
        tgt_table = src_table if cfg.tie_embeddings else make_embedding(tgt_vocab, cfg.d_model)
        self.src_embed = Embedder(src_table, positions, cfg.dropout)
        self.tgt_embed = Embedder(tgt_table, positions, cfg.dropout)
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        self.out = nn.Linear(cfg.d_model, tgt_vocab, bias=False)
        if cfg.tie_embeddings:  # sec. 3.4: one matrix for both embeddings and pre-softmax
            self.out.weight = src_table.weight
        else:
            init_linear(self.out)

    def encode(self, src: Tensor, src_mask: Tensor) -> State:
        """Run the encoder; return the initial decoder state (layout: module docstring)."""
        positions = torch.arange(src.size(1), device=src.device)  # (S,)
        memory = self.encoder(self.src_embed(src, positions), key_padding_mask(src_mask))
        cross_kv = self.decoder.project_memory(memory)
        b, d = memory.size(0), memory.size(-1)
        empty = memory.new_zeros(b, self.heads, 0, d // self.heads, dtype=cross_kv[0][0].dtype)
        return {
            "memory": memory,  # (B, S, D)
            "memory_mask": src_mask,  # (B, S)
            "cross_kv": cross_kv,
            "self_kv": [(empty, empty) for _ in cross_kv],  # (B, H, 0, Dh) each
            "step": torch.zeros(b, dtype=torch.long, device=src.device),  # (B,)
        }

    def decode_step(self, prev: Tensor, state: State) -> tuple[Tensor, State]:
        """Feed ``prev`` (B,) at position ``state["step"]``; return log-probs (B, V), state."""
        x = self.tgt_embed(prev, state["step"]).unsqueeze(1)  # (B, 1, D)
        mask = key_padding_mask(state["memory_mask"])  # (B, 1, 1, S)
        x, caches, weights = self.decoder(
            x, state["cross_kv"], mask, state["self_kv"], self.keep_attention
        )  # (B, 1, D)
        log_probs = log_softmax_fp32(self.out(x[:, 0]))  # (B, V)
        new_state = {**state, "self_kv": caches, "step": state["step"] + 1}
        new_state.pop("attention", None)
        if weights is not None:
            new_state["attention"] = weights[:, :, 0].mean(dim=1)  # (B, S)
        return log_probs, new_state

    def forward(self, src: Tensor, src_mask: Tensor, tgt_in: Tensor) -> Tensor:
        """Teacher forcing: all target positions at once under a causal mask -> (B, T, V)."""
        state = self.encode(src, src_mask)
        positions = torch.arange(tgt_in.size(1), device=tgt_in.device)  # (T,)
        x = self.tgt_embed(tgt_in, positions)  # (B, T, D)
        x, _, _ = self.decoder(x, state["cross_kv"], key_padding_mask(src_mask))  # (B, T, D)
        return self.out(x)  # (B, T, V)


def check_config(cfg: TransformerConfig, src_vocab: int, tgt_vocab: int) -> None:
    """Reject settings the model cannot honour, with a message naming the setting."""
    if cfg.norm not in ("pre", "post"):
        raise ValueError(f"transformer norm must be 'pre' or 'post', got {cfg.norm!r}")
    if cfg.d_model % cfg.heads:
        raise ValueError(f"d_model ({cfg.d_model}) must be divisible by heads ({cfg.heads})")
    if cfg.tie_embeddings and src_vocab != tgt_vocab:
        raise ValueError(
            f"tie_embeddings needs one joint vocabulary, got src_vocab={src_vocab} "
            f"and tgt_vocab={tgt_vocab}"
        )


def make_embedding(vocab: int, d_model: int) -> nn.Embedding:
    """Embedding with N(0, d_model^-0.5) weights, the scale that suits all its uses.

    Multiplied by sqrt(d_model) (sec. 3.4) it gives unit-variance inputs, and as the tied
    output projection it gives logits of unit variance for a unit-variance decoder output.
    """
    embedding = nn.Embedding(vocab, d_model)
    nn.init.normal_(embedding.weight, mean=0.0, std=d_model**-0.5)
    return embedding
