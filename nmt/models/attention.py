"""RNN encoder-decoder with attention (Bahdanau et al., 2014; Luong et al., 2015).

The encoder (Elman RNN, GRU or LSTM; optionally bidirectional) keeps one annotation per
source token; at every target step the decoder scores them against its current top hidden
state, averages them into a context vector and combines both into the attentional hidden
state h~_t that predicts the next word (Luong et al. 2015, sec. 3, eqs. 5-8). The score is
additive (Bahdanau) or multiplicative (Luong's dot / general); input feeding (Luong sec.
3.3) gives the decoder its previous h~ as extra input.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from nmt.config import AttentionConfig
from nmt.models.base import Seq2Seq, State, log_softmax_fp32
from nmt.models.dropout import Dropout
from nmt.models.rnn_common import (
    Hidden,
    make_rnn,
    run_encoder,
    split_directions,
    to_batch_first,
    to_layer_first,
)

SCORES = ("bahdanau", "dot", "general")


class Attention(nn.Module):
    """Score functions over a memory whose key projection is computed once per sentence.

    Every score here is affine in the memory, so its memory-side half (``keys``) is
    precomputed in ``encode`` and each decoder step only projects the query.
    """

    def __init__(self, kind: str, hidden: int) -> None:
        super().__init__()
        if kind not in SCORES:
            raise ValueError(f"unknown attention '{kind}' (expected one of {', '.join(SCORES)})")
        self.kind = kind
        if kind == "general":  # Luong et al. 2015, eq. 8: h_t^T W_a h_s
            self.w_a = nn.Linear(hidden, hidden, bias=False)
        if kind == "bahdanau":  # Bahdanau et al. 2014, app. A.1.2: v^T tanh(W q + U k)
            self.w_q = nn.Linear(hidden, hidden)
            self.w_k = nn.Linear(hidden, hidden, bias=False)
            self.v = nn.Linear(hidden, 1, bias=False)

    def keys(self, memory: Tensor) -> Tensor | None:
        """Memory-side projection (B, S, H), done once per sentence; None for dot (= memory)."""
        if self.kind == "general":
            return self.w_a(memory)  # (B, S, H): h_t^T (W_a h_s)
        if self.kind == "bahdanau":
            return self.w_k(memory)  # (B, S, H): U_a h_j
        return None

    def scores(self, query: Tensor, keys: Tensor) -> Tensor:
        """Alignment scores (B, T, S) of queries (B, T, H) against keys (B, S, H)."""
        if self.kind != "bahdanau":
            return torch.bmm(query, keys.transpose(1, 2))  # (B, T, S)
        q = self.w_q(query).unsqueeze(2)  # (B, T, 1, H)
        return self.v(torch.tanh(q + keys.unsqueeze(1))).squeeze(-1)  # (B, T, S)

    def forward(
        self, query: Tensor, memory: Tensor, keys: Tensor | None, mask: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Context (B, T, H) and float32 weights (B, T, S); padding gets zero weight.

        Softmax over source positions (Luong et al. 2015, eq. 7; Bahdanau et al. 2014,
        eq. 6) runs in float32 so -inf masking is safe under bf16 autocast.
        """
        e = self.scores(query, memory if keys is None else keys).float()  # (B, T, S)
        e = e.masked_fill(~mask.unsqueeze(1), float("-inf"))  # (B, T, S)
        weights = torch.softmax(e, dim=-1)  # (B, T, S)
        context = torch.bmm(weights.to(memory.dtype), memory)  # (B, T, H)
        return context, weights


class AttentionSeq2Seq(Seq2Seq):
    """Encoder RNN -> memory; decoder RNN + attention -> h~_t -> output projection.

    Decoder state (all batch first): ``h`` (B, L, H) (and ``c`` for LSTM), ``memory``
    (B, S, H), ``keys`` (B, S, H) or None, ``mask`` (B, S), ``feed`` (B, H) with input
    feeding, and after a step ``attention`` (B, S), the last step's weights.
    """

    def __init__(self, cfg: AttentionConfig, src_vocab: int, tgt_vocab: int, pad_id: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.pad_id = pad_id
        dirs = 2 if cfg.bidirectional else 1
        self.parts = ("h", "c") if cfg.cell == "lstm" else ("h",)
        self.src_embed = nn.Embedding(src_vocab, cfg.emb_dim, padding_idx=pad_id)
        self.tgt_embed = nn.Embedding(tgt_vocab, cfg.emb_dim, padding_idx=pad_id)
        self.encoder = make_rnn(
            cfg.cell, cfg.emb_dim, cfg.hidden, cfg.layers, cfg.dropout, cfg.bidirectional
        )
        self.memory_proj = nn.Linear(dirs * cfg.hidden, cfg.hidden)
        # Bidirectional: tanh(W [fwd; bwd]) per layer and per part (h, c) -> decoder init.
        bridges = [nn.Linear(2 * cfg.hidden, cfg.hidden) for _ in self.parts]
        self.bridge = nn.ModuleList(bridges if cfg.bidirectional else [])
        feed = cfg.hidden if cfg.input_feeding else 0
        self.decoder = make_rnn(cfg.cell, cfg.emb_dim + feed, cfg.hidden, cfg.layers, cfg.dropout)
        self.attention = Attention(cfg.attention, cfg.hidden)
        self.combine = nn.Linear(2 * cfg.hidden, cfg.hidden, bias=False)  # W_c, Luong eq. 5
        self.dropout = Dropout(cfg.dropout)
        self.out = nn.Linear(cfg.hidden, tgt_vocab)  # W_s, Luong eq. 6

    def encode(self, src: Tensor, src_mask: Tensor) -> State:
        """Encode once: memory, its key projection, and the decoder's initial hidden state."""
        x = self.dropout(self.src_embed(src))  # (B, S, E)
        out, final = run_encoder(self.encoder, x, src_mask)  # (B, S, D*H)
        memory = self.memory_proj(out)  # (B, S, H)
        state: State = {"memory": memory, "keys": self.attention.keys(memory), "mask": src_mask}
        state.update(zip(self.parts, to_batch_first(self._init_hidden(final)), strict=True))
        if self.cfg.input_feeding:
            state["feed"] = memory.new_zeros(src.size(0), self.cfg.hidden)  # (B, H): h~_0 = 0
        return state

    def _init_hidden(self, final: Hidden) -> Hidden:
        """Decoder initial state from the encoder's final state, layer by layer.

        A bidirectional encoder's forward and backward final states are concatenated and
        mapped to the decoder size with tanh(W [fwd; bwd]) (in the spirit of Bahdanau et
        al. 2014, app. A.2.2, which uses the backward state only); a unidirectional
        encoder's final state is used as is.
        """
        if not self.cfg.bidirectional:
            return final
        parts = final if isinstance(final, tuple) else (final,)
        mapped = tuple(
            torch.tanh(bridge(split_directions(p, 2)))  # (L, B, H)
            for bridge, p in zip(self.bridge, parts, strict=True)
        )
        return mapped if len(mapped) == 2 else mapped[0]

    def _attentional(self, y: Tensor, state: State) -> tuple[Tensor, Tensor]:
        """h~_t = tanh(W_c [c_t; h_t]) (Luong et al. 2015, eq. 5) for decoder outputs y (B, T, H).

        The query is the current top hidden state h_t (Luong's flow, sec. 3.1), also for the
        additive score, so that without input feeding all steps can attend in one batch.
        """
        context, weights = self.attention(y, state["memory"], state["keys"], state["mask"])
        h_tilde = torch.tanh(self.combine(torch.cat([context, y], dim=-1)))  # (B, T, H)
        return h_tilde, weights  # (B, T, H), (B, T, S)

    def _step(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        """One decoder step on embedded input x (B, 1, E): h~ (B, 1, H) and the new state.

        With input feeding the previous h~ is concatenated to the input (Luong et al. 2015,
        sec. 3.3) so that the decoder knows its past alignment decisions.
        """
        if self.cfg.input_feeding:
            x = torch.cat([x, state["feed"].unsqueeze(1).to(x.dtype)], dim=-1)  # (B, 1, E+H)
        hx = to_layer_first(tuple(state[k] for k in self.parts))  # each (L, B, H)
        y, hidden = self.decoder(x, hx)  # (B, 1, H)
        h_tilde, weights = self._attentional(y, state)  # (B, 1, H), (B, 1, S)
        state = {**state, **dict(zip(self.parts, to_batch_first(hidden), strict=True))}
        state["attention"] = weights.squeeze(1)  # (B, S)
        if self.cfg.input_feeding:
            state["feed"] = h_tilde.squeeze(1)  # (B, H)
        return h_tilde, state

    def decode_step(self, prev: Tensor, state: State) -> tuple[Tensor, State]:
        """Feed ``prev`` (B,) tokens: float32 log-probs (B, V) and the updated state."""
        x = self.dropout(self.tgt_embed(prev.unsqueeze(1)))  # (B, 1, E)
        h_tilde, state = self._step(x, state)  # (B, 1, H)
        logits = self.out(self.dropout(h_tilde.squeeze(1)))  # (B, V)
        return log_softmax_fp32(logits), state

    def forward(self, src: Tensor, src_mask: Tensor, tgt_in: Tensor) -> Tensor:
        """Teacher forcing; logits (B, T, V), the same as repeated :meth:`decode_step`.

        Without input feeding the decoder RNN runs over the whole target in one fused call
        and all steps attend in one batched product; with it, h~_{t-1} is an input of step
        t, so the steps run one after the other.
        """
        state = self.encode(src, src_mask)
        x = self.dropout(self.tgt_embed(tgt_in))  # (B, T, E)
        if self.cfg.input_feeding:
            steps = []
            for t in range(x.size(1)):
                h_tilde, state = self._step(x[:, t : t + 1], state)  # (B, 1, H)
                steps.append(h_tilde)
            h_tilde = torch.cat(steps, dim=1)  # (B, T, H)
        else:
            hx = to_layer_first(tuple(state[k] for k in self.parts))  # each (L, B, H)
            y, _ = self.decoder(x, hx)  # (B, T, H)
            h_tilde, _ = self._attentional(y, state)  # (B, T, H)
        return self.out(self.dropout(h_tilde))  # (B, T, V)
