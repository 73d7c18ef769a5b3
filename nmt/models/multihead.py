"""Multi-head attention of the Transformer (Vaswani et al. 2017, sec. 3.2), with the
key/value caching that incremental decoding needs.

Self-attention projects queries, keys and values from the same sequence; cross-attention
projects its keys and values from the encoder output once per sentence
(:meth:`CrossAttention.project_memory`), which is why they are two classes.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nmt.models.dropout import dropout

KV = tuple[Tensor, Tensor]  # keys and values, each (B, H, T, Dh)


def key_padding_mask(mask: Tensor) -> Tensor:
    """Turn a (B, S) real-token mask into a boolean SDPA ``attn_mask`` (True = may attend).

    A row without any real token would take a softmax over an empty set (NaN), and one
    NaN spreads to the whole batch through the gradient; such rows attend everywhere
    instead, so their meaningless outputs stay finite.
    """
    mask = mask | ~mask.any(dim=1, keepdim=True)  # (B, S)
    return mask[:, None, None, :]  # (B, 1, 1, S)


def init_linear(linear: nn.Linear, blocks: int = 1) -> None:
    """Xavier-uniform weights, zero biases; fused projections are initialised per block.

    A fused Q/K/V weight is three (D, D) matrices side by side; initialising it as one
    (3D, D) matrix would shrink Xavier's bound, so each block gets its own fan-in/out.
    """
    with torch.no_grad():
        for block in linear.weight.chunk(blocks, dim=0):
            nn.init.xavier_uniform_(block)
        if linear.bias is not None:
            nn.init.zeros_(linear.bias)


def split_heads(x: Tensor, heads: int) -> Tensor:
    """(B, T, D) -> (B, H, T, D/H): each head attends in its own subspace (sec. 3.2.2)."""
    b, t, d = x.shape
    return x.view(b, t, heads, d // heads).transpose(1, 2)  # (B, H, T, Dh)


def merge_heads(x: Tensor) -> Tensor:
    """(B, H, T, Dh) -> (B, T, H*Dh): the Concat(head_1..head_h) of sec. 3.2.2."""
    b, h, t, dh = x.shape
    return x.transpose(1, 2).reshape(b, t, h * dh)  # (B, T, D)


def attend(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    mask: Tensor | None,
    dropout_p: float,
    causal: bool = False,
    need_weights: bool = False,
) -> tuple[Tensor, Tensor | None]:
    """Scaled dot-product attention, eq. 1: softmax(Q K^T / sqrt(d_k)) V.

    The fused kernel never materialises the weights, so it is used unless the caller
    wants them (attention plots) or attention dropout runs on CPU: there SDPA would fall
    back to its own unfused kernel with the slow ``bernoulli_`` mask, so the weights are
    computed explicitly and dropped out with :func:`nmt.models.dropout.dropout`.
    Shapes: q (B, H, Tq, Dh), k and v (B, H, Tk, Dh), mask broadcastable to (B, H, Tq, Tk).
    """
    explicit = need_weights or (dropout_p > 0 and q.device.type == "cpu")
    if not explicit:
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=causal
        )  # (B, H, Tq, Dh)
        return out, None
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))  # (B, H, Tq, Tk)
    if causal:
        tq, tk = scores.shape[-2:]
        allowed = torch.ones(tq, tk, dtype=torch.bool, device=q.device).tril()  # (Tq, Tk)
        scores = scores.masked_fill(~allowed, float("-inf"))
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores.float(), dim=-1)  # (B, H, Tq, Tk)
    out = dropout(weights, dropout_p, dropout_p > 0).to(v.dtype) @ v  # (B, H, Tq, Dh)
    return out, weights


class SelfAttention(nn.Module):
    """Multi-head self-attention (sec. 3.2.2) with one fused Q/K/V projection.

    One (D, 3D) matmul instead of three smaller ones is faster on CPU. With ``cache``,
    the new keys/values are appended to those of earlier steps (incremental decoding;
    the query is then the single newest position, so no causal mask is needed).
    """

    def __init__(self, d_model: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)
        init_linear(self.qkv, blocks=3)
        init_linear(self.out)

    def forward(
        self, x: Tensor, mask: Tensor | None = None, causal: bool = False, cache: KV | None = None
    ) -> tuple[Tensor, KV]:
        """x (B, T, D) -> (B, T, D), plus the keys/values seen so far (for the cache)."""
        q, k, v = (split_heads(p, self.heads) for p in self.qkv(x).chunk(3, dim=-1))
        if cache is not None:
            k = torch.cat([cache[0], k], dim=2)  # (B, H, t + T, Dh)
            v = torch.cat([cache[1], v], dim=2)  # (B, H, t + T, Dh)
        p = self.dropout if self.training else 0.0
        out, _ = attend(q, k, v, mask, p, causal=causal)  # (B, H, T, Dh)
        return self.out(merge_heads(out)), (k, v)


class CrossAttention(nn.Module):
    """Encoder-decoder attention (sec. 3.2.3) with a fused K/V projection of the memory.

    The memory's keys/values are projected once per sentence (:meth:`project_memory`)
    and reused at every decoding step.
    """

    def __init__(self, d_model: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.q = nn.Linear(d_model, d_model)
        self.kv = nn.Linear(d_model, 2 * d_model)
        self.out = nn.Linear(d_model, d_model)
        init_linear(self.q)
        init_linear(self.kv, blocks=2)
        init_linear(self.out)

    def project_memory(self, memory: Tensor) -> KV:
        """memory (B, S, D) -> keys and values, each (B, H, S, Dh), contiguous for reuse."""
        k, v = (split_heads(p, self.heads) for p in self.kv(memory).chunk(2, dim=-1))
        return k.contiguous(), v.contiguous()

    def forward(
        self, x: Tensor, kv: KV, mask: Tensor, need_weights: bool = False
    ) -> tuple[Tensor, Tensor | None]:
        """x (B, T, D) -> (B, T, D), plus weights (B, H, T, S) if ``need_weights``."""
        q = split_heads(self.q(x), self.heads)  # (B, H, T, Dh)
        p = self.dropout if self.training else 0.0
        out, weights = attend(q, kv[0], kv[1], mask, p, need_weights=need_weights)
        return self.out(merge_heads(out)), weights
