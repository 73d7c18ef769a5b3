"""Sequence to sequence learning with LSTMs (Sutskever et al., 2014).

A multilayer LSTM reads the (optionally reversed) source; its final (h, c) at every layer
is the whole summary of the sentence and initialises a multilayer LSTM decoder, whose top
layer feeds a softmax over the target vocabulary (sec. 2 of the paper). There is no
attention: the fixed-size final state is the only path from source to target.
"""

from __future__ import annotations

from torch import Tensor, nn

from nmt.config import LSTMConfig
from nmt.models.base import Seq2Seq, State, log_softmax_fp32
from nmt.models.dropout import Dropout
from nmt.models.rnn_common import (
    make_rnn,
    reverse_padded,
    run_encoder,
    to_batch_first,
    to_layer_first,
)


class LSTMSeq2Seq(Seq2Seq):
    """Encoder LSTM -> final (h, c) -> decoder LSTM -> output projection.

    Decoder state: ``{"h": (B, L, H), "c": (B, L, H)}`` (batch first for beam search).
    """

    def __init__(self, cfg: LSTMConfig, src_vocab: int, tgt_vocab: int, pad_id: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.pad_id = pad_id
        self.src_embed = nn.Embedding(src_vocab, cfg.emb_dim, padding_idx=pad_id)
        self.tgt_embed = nn.Embedding(tgt_vocab, cfg.emb_dim, padding_idx=pad_id)
        self.encoder = make_rnn("lstm", cfg.emb_dim, cfg.hidden, cfg.layers, cfg.dropout)
        self.decoder = make_rnn("lstm", cfg.emb_dim, cfg.hidden, cfg.layers, cfg.dropout)
        self.dropout = Dropout(cfg.dropout)
        self.out = nn.Linear(cfg.hidden, tgt_vocab)

    def encode(self, src: Tensor, src_mask: Tensor) -> State:
        """Final encoder (h, c) of every layer, read at each sentence's true last token.

        With ``reverse_source`` the real tokens are fed last-to-first (Sutskever et al.
        2014, sec. 3.3); padding stays on the right so packing still skips it.
        """
        if self.cfg.reverse_source:
            src = reverse_padded(src, src_mask)  # (B, S)
        x = self.dropout(self.src_embed(src))  # (B, S, E)
        _, final = run_encoder(self.encoder, x, src_mask)  # (h, c), each (L, B, H)
        h, c = to_batch_first(final)  # each (B, L, H)
        return {"h": h, "c": c}

    def _decode(self, tgt_in: Tensor, state: State) -> tuple[Tensor, State]:
        """Run the decoder LSTM over ``tgt_in`` (B, T) from ``state``; logits (B, T, V)."""
        x = self.dropout(self.tgt_embed(tgt_in))  # (B, T, E)
        hx = to_layer_first((state["h"], state["c"]))  # (h, c), each (L, B, H)
        y, final = self.decoder(x, hx)  # (B, T, H)
        logits = self.out(self.dropout(y))  # (B, T, V)
        h, c = to_batch_first(final)  # each (B, L, H)
        return logits, {"h": h, "c": c}

    def decode_step(self, prev: Tensor, state: State) -> tuple[Tensor, State]:
        """One decoder step for ``prev`` (B,) tokens: float32 log-probs (B, V) and new state."""
        logits, state = self._decode(prev.unsqueeze(1), state)  # (B, 1, V)
        return log_softmax_fp32(logits.squeeze(1)), state  # (B, V)

    def forward(self, src: Tensor, src_mask: Tensor, tgt_in: Tensor) -> Tensor:
        """Teacher forcing: one fused LSTM call over the whole target; logits (B, T, V)."""
        logits, _ = self._decode(tgt_in, self.encode(src, src_mask))
        return logits  # (B, T, V)
