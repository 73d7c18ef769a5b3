"""Dropout (Srivastava et al. 2014) with a cheaper random mask on CPU.

On CPU, ``torch.nn.functional.dropout`` draws its mask with ``bernoulli_``, one
generator call per element; in a small Transformer's bf16 training step that alone took
about 14 % of the time. Here one 64-bit draw serves four elements: the random words are
viewed as 16-bit integers, uniform over [-32768, 32767], and an element is kept when its
integer is at least ``-32768 + round(p * 65536)``. The drop probability is therefore
``p`` rounded to a multiple of 1/65536 (0.1 becomes 0.099998...). Kept elements are
scaled by 1 / (1 - p), so the expected activation is unchanged (inverted dropout).

The mask is turned into the activations' dtype before it multiplies them: a bool operand
makes PyTorch's CPU kernels convert it anyway, once in the forward and once in the
backward pass, and that made ``x * keep * scale`` about a third slower than ``x * mask *
scale`` with ``mask = keep.to(x.dtype)`` (``bench/training_kernels.py``). The residual
connection ``x + dropout(y)``, the most frequent use, is one ``addcmul`` (:func:`add`):
one pass instead of three in the forward, and the dropped-out ``y`` is never rounded to
bf16 before the fp32 residual stream adds it.

Masks come from the default CPU generator, so seeding and ``--resume`` (which restores
that generator) reproduce them. Other devices keep the fused ``F.dropout``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

_LEVELS = 65536  # a 16-bit integer takes this many values
_INT64_MIN = -(2**63)  # random_() alone leaves the sign bit 0; from here all bits are random


def keep_mask(shape: torch.Size, p: float) -> Tensor:
    """A bool mask of ``shape``, each element True with probability 1 - p (CPU)."""
    n = shape.numel()
    words = torch.empty((n + 3) // 4, dtype=torch.int64).random_(_INT64_MIN, None)  # all 64 bits
    uniform = words.view(torch.int16)[:n].view(shape)  # 4 x 16-bit uniforms per word
    return uniform >= round(p * _LEVELS) - _LEVELS // 2


def dropout(x: Tensor, p: float, training: bool) -> Tensor:
    """Zero each element of ``x`` with probability ``p`` and scale the rest by 1/(1-p)."""
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu" or p >= 1.0:
        return F.dropout(x, p, training=True)
    keep = keep_mask(x.shape, p).to(x.dtype)  # same shape as x, 1.0 or 0.0
    return x * keep * (1.0 / (1.0 - p))


def add(x: Tensor, y: Tensor, p: float, training: bool) -> Tensor:
    """``x + dropout(y)``: the residual connection with dropout on the sublayer's output
    (Vaswani et al. 2017, sec. 5.4), fused into one ``addcmul`` on CPU. ``x`` and ``y``
    have the same shape; the result has their promoted dtype, as ``x + y`` would."""
    if not training or p == 0.0:
        return x + y
    if y.device.type != "cpu" or p >= 1.0:
        return x + F.dropout(y, p, training=True)
    keep = keep_mask(y.shape, p).to(torch.promote_types(x.dtype, y.dtype))  # 1.0 or 0.0
    return torch.addcmul(x, y, keep, value=1.0 / (1.0 - p))


class Dropout(nn.Module):
    """Drop-in for ``nn.Dropout`` that uses :func:`dropout`."""

    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability must be in [0, 1], not {p}")
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        return dropout(x, self.p, self.training)

    def add(self, x: Tensor, y: Tensor) -> Tensor:
        """``x + self(y)`` in one pass (:func:`add`)."""
        return add(x, y, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"
