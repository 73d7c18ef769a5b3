"""Label-smoothed cross-entropy over the vocabulary, fused into one forward and one backward.

The training loss is the cross-entropy with label smoothing (Szegedy et al. 2016;
Vaswani et al. 2017, sec. 5.4): the target distribution puts 1 - eps on the reference
token and eps / V on every token, so per target position

    loss = (1 - eps) * (lse - z_t) + eps * (lse - mean_j z_j),   lse = log sum_j exp z_j

with logits z over a vocabulary of V. Its gradient with respect to z is
softmax(z) - (1 - eps) * onehot(t) - eps / V.

Written as ``F.cross_entropy(logits.float(), ...)``, autograd makes an fp32 copy of the
(tokens x vocabulary) logits, stores the fp32 log-softmax for the backward pass, fills a
zero gradient and converts it back to bf16: several passes over the largest tensor of a
small model's step. Here the forward keeps nothing of that size (the loss needs only each
row's log-softmax at the target and its sum) and the backward recomputes the softmax and
writes the gradient directly in the logits' dtype, in row chunks so that the fp32
temporaries stay small. Both go through PyTorch's fused ``log_softmax``/``softmax``
kernels, whose vectorised exponential is faster on CPU than a hand-written
``sub_(lse).exp_()`` (README, "Performance"; ``bench/training_kernels.py``). Padding
positions (``ignore_index``) add nothing and get zero gradient. Values and gradients equal
``F.cross_entropy`` with ``reduction="sum"``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from nmt.data.batch import Batch
from nmt.precision import autocast

CHUNK_ROWS = 1024  # rows of fp32 temporaries at a time (1024 x 8k vocabulary = 32 MiB)
# On a GPU memory is plentiful and every chunk costs kernel launches: 16k rows of an 8k
# vocabulary are 512 MiB of fp32 temporaries, one chunk for most batches.
GPU_CHUNK_ROWS = 16384


class _SmoothedCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits: Tensor, target: Tensor, ignore_index: int, eps: float) -> Tensor:
        keep = (target != ignore_index).float()  # (N,)
        safe = target.masked_fill(target == ignore_index, 0)  # (N,) valid gather indices
        vocab = logits.size(-1)
        total = logits.new_zeros((), dtype=torch.float32)
        work = _workspace(logits)  # (C, V) fp32, reused by every chunk
        for rows in _chunks(logits):
            z = work[: rows.stop - rows.start].copy_(logits[rows])  # (C, V)
            log_p = torch.log_softmax(z, dim=-1)  # (C, V) = z - lse
            log_p_t = log_p.gather(1, safe[rows, None]).squeeze(1)  # (C,)
            per_row = -(1.0 - eps) * log_p_t - (eps / vocab) * log_p.sum(dim=-1)  # (C,)
            total += (per_row * keep[rows]).sum()
        ctx.save_for_backward(logits, safe, keep)
        ctx.eps = eps
        return total

    @staticmethod
    def backward(ctx, grad_out: Tensor) -> tuple[Tensor, None, None, None]:
        logits, safe, keep = ctx.saved_tensors
        eps, vocab = ctx.eps, logits.size(-1)
        grad = torch.empty_like(logits)  # (N, V) in the logits' dtype
        scale = keep * grad_out  # (N,) zero on padding
        work = _workspace(logits)  # (C, V) fp32, reused by every chunk
        for rows in _chunks(logits):
            z = work[: rows.stop - rows.start].copy_(logits[rows])  # (C, V)
            g = torch.softmax(z, dim=-1).sub_(eps / vocab)  # (C, V) softmax - eps / V
            g.scatter_add_(1, safe[rows, None], g.new_full((g.size(0), 1), eps - 1.0))
            grad[rows] = g.mul_(scale[rows, None])
        return grad, None, None, None


def _workspace(logits: Tensor) -> Tensor:
    """One fp32 buffer of a chunk's size for all chunks of a call: a fresh 32 MiB tensor
    per chunk and operation cost more in page faults than the arithmetic on it (the
    profile in README, "Performance")."""
    rows = min(logits.size(0), _chunk_rows(logits))
    return torch.empty(rows, logits.size(-1), dtype=torch.float32, device=logits.device)


def _chunk_rows(logits: Tensor) -> int:
    return CHUNK_ROWS if logits.device.type == "cpu" else GPU_CHUNK_ROWS


def _chunks(logits: Tensor) -> list[slice]:
    n, size = logits.size(0), _chunk_rows(logits)
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


def smoothed_cross_entropy(
    logits: Tensor, target: Tensor, ignore_index: int, label_smoothing: float
) -> Tensor:
    """Summed label-smoothed cross-entropy: logits (N, V), target (N,) -> () float32."""
    return _SmoothedCrossEntropy.apply(logits, target, ignore_index, label_smoothing)


def batch_loss_sum(
    forward: Callable[..., Tensor],
    batch: Batch,
    precision: str,
    pad_id: int,
    label_smoothing: float,
) -> Tensor:
    """Teacher-forced loss of ``batch`` summed (not averaged) over its target tokens: ()
    float32. ``forward`` is the model (or its DDP wrapper), run under ``precision``."""
    with autocast(precision, batch.src.device):
        logits = forward(batch.src, batch.src_mask, batch.tgt_in)  # (B, T, V)
    return smoothed_cross_entropy(
        logits.flatten(0, 1),  # (B*T, V)
        batch.tgt_out.flatten(),  # (B*T,)
        ignore_index=pad_id,
        label_smoothing=label_smoothing,
    )
