"""Helpers shared by the two recurrent backbones (:mod:`nmt.models.lstm`, :mod:`.attention`).

PyTorch's recurrent modules keep hidden states as (layers * directions, B, H), while the
decoder state of :class:`nmt.models.base.Seq2Seq` must be batch first so that beam search
can reorder it with one ``index_select``; the helpers here convert between the two and run
whole sequences through one fused ``nn.RNN``/``nn.GRU``/``nn.LSTM`` call (no Python loop
over time steps or over the batch).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

# nn.RNN / nn.GRU carry one tensor; nn.LSTM carries the pair (h, c).
Hidden = Tensor | tuple[Tensor, Tensor]

CELLS: dict[str, type[nn.RNNBase]] = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}


def make_rnn(
    cell: str,
    input_size: int,
    hidden: int,
    layers: int,
    dropout: float = 0.0,
    bidirectional: bool = False,
) -> nn.RNNBase:
    """A batch-first multilayer recurrent module named by ``cell``: rnn (tanh Elman), gru, lstm.

    ``dropout`` is applied between stacked layers only (PyTorch ignores it, with a warning,
    for a single layer, so it is dropped there).
    """
    if cell not in CELLS:
        raise ValueError(f"unknown RNN cell '{cell}' (expected one of {', '.join(CELLS)})")
    return CELLS[cell](
        input_size,
        hidden,
        num_layers=layers,
        dropout=dropout if layers > 1 else 0.0,
        bidirectional=bidirectional,
        batch_first=True,
    )


def lengths_of(mask: Tensor) -> Tensor:
    """True lengths (B,) as int64 on the CPU, the form ``pack_padded_sequence`` wants."""
    return mask.sum(dim=1).to(device="cpu", dtype=torch.int64)  # (B,)


def reverse_padded(tokens: Tensor, mask: Tensor) -> Tensor:
    """Reverse each row's real tokens in place of them, leaving right padding where it is.

    Sutskever et al. (2014), sec. 3.3: feeding the source backwards puts the first source
    words next to the first target words and eases optimisation.
    """
    lengths = mask.sum(dim=1, keepdim=True)  # (B, 1)
    pos = torch.arange(tokens.size(1), device=tokens.device).unsqueeze(0)  # (1, S)
    index = torch.where(pos < lengths, lengths - 1 - pos, pos)  # (B, S)
    return tokens.gather(1, index)  # (B, S)


def run_encoder(rnn: nn.RNNBase, x: Tensor, mask: Tensor) -> tuple[Tensor, Hidden]:
    """Run ``rnn`` over right-padded ``x`` (B, S, E); final states are at each true last token.

    Packing (``enforce_sorted=False``) makes the final states and the backward direction
    ignore padding. A batch without padding skips packing: the unpacked fused kernel is
    faster and computes the same thing.
    """
    if bool(mask.all()):
        return rnn(x)  # (B, S, D*H), final states (L*D, B, H)
    packed = pack_padded_sequence(x, lengths_of(mask), batch_first=True, enforce_sorted=False)
    out, final = rnn(packed)
    out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.size(1))  # (B, S, D*H)
    return out, final


def split_directions(h: Tensor, directions: int) -> Tensor:
    """(L*D, B, H) final states -> (L, B, D*H): each layer's directions concatenated."""
    layers_dirs, batch, hidden = h.shape
    h = h.view(layers_dirs // directions, directions, batch, hidden)  # (L, D, B, H)
    return h.permute(0, 2, 1, 3).reshape(-1, batch, directions * hidden)  # (L, B, D*H)


def to_batch_first(hidden: Hidden) -> tuple[Tensor, ...]:
    """(L, B, H) module states -> tuple of (B, L, H) tensors, the layout the state dict uses."""
    parts = hidden if isinstance(hidden, tuple) else (hidden,)
    return tuple(p.transpose(0, 1) for p in parts)  # each (B, L, H)


def to_layer_first(parts: tuple[Tensor, ...]) -> Hidden:
    """Inverse of :func:`to_batch_first`: (B, L, H) tensors -> the module's (L, B, H) states."""
    states = tuple(p.transpose(0, 1).contiguous() for p in parts)  # each (L, B, H)
    return states if len(states) == 2 else states[0]
