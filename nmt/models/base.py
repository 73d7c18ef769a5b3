"""The one contract every backbone implements.

Training calls :meth:`Seq2Seq.forward` (teacher forcing); search calls :meth:`encode`,
then :meth:`decode_step` once per output position, and :meth:`reorder_state` whenever
beam search reorders or prunes its hypotheses. Neither ever asks which backbone it
holds. Decoder state is a plain ``dict`` whose tensors all have the batch (or
batch x beam) dimension first, so the default :meth:`reorder_state` is a single
``index_select`` per tensor (the idea of fairseq's ``reorder_incremental_state``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

State = dict[str, Any]  # values: Tensor (batch first), list/tuple of them, or None


def reorder(value: Any, index: Tensor) -> Any:
    """Select rows ``index`` along dim 0 of every tensor inside ``value`` (recursively)."""
    if isinstance(value, Tensor):
        return value.index_select(0, index)
    if isinstance(value, dict):
        return {k: reorder(v, index) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(reorder(v, index) for v in value)
    return value  # None, ints, flags: shared by all rows


class Seq2Seq(nn.Module):
    """Base class of the three backbones (LSTM, attention RNN, Transformer).

    Conventions shared by all backbones:

    - ``src``: (B, S) token ids; ``src_mask``: (B, S) bool, True on real tokens.
      Sources end with EOS and are right-padded with the tokenizer's pad id.
    - ``tgt_in``: (B, T) decoder input = BOS + target tokens (right-padded).
    - ``forward`` returns unnormalised logits (B, T, V); ``decode_step`` returns
      float32 log-probabilities (B, V) for the next token.
    - ``state`` carries ``"attention"``: (B, S) weights of the last step, for plots,
      when the backbone has attention and :meth:`report_attention` switched it on.
    """

    pad_id: int
    max_positions: int = 1024  # longest input/output translated (RNNs: a cost bound only)
    keep_attention: bool = False  # see report_attention

    def report_attention(self, on: bool = True) -> None:
        """Ask :meth:`decode_step` to put its attention weights into ``state["attention"]``.

        Off by default because it can cost speed (the Transformer then bypasses its fused
        attention kernel). A backbone without attention reports none whatever this says;
        one whose attention is free (the attention RNN) may report it always.
        """
        self.keep_attention = on

    def encode(self, src: Tensor, src_mask: Tensor) -> State:
        """Run the encoder; return the initial decoder state (holds what decoding needs)."""
        raise NotImplementedError

    def decode_step(self, prev: Tensor, state: State) -> tuple[Tensor, State]:
        """Feed ``prev`` (B,) tokens; return log-probs (B, V) and the updated state."""
        raise NotImplementedError

    def reorder_state(self, state: State, index: Tensor) -> State:
        """Keep rows ``index`` (B',) of the state, in that order (beam search bookkeeping)."""
        return reorder(state, index)

    def forward(self, src: Tensor, src_mask: Tensor, tgt_in: Tensor) -> Tensor:
        """Teacher-forced decoding: logits (B, T, V) for every target position."""
        raise NotImplementedError

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def log_softmax_fp32(logits: Tensor) -> Tensor:
    """Log-probabilities in float32 whatever precision the logits were computed in."""
    return torch.log_softmax(logits.float(), dim=-1)
