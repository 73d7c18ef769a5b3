"""Two kernels of the training step alone, ours against the plain formulations.

    python bench/training_kernels.py --json bench/results/training_kernels.json

Times forward + backward, best of ``--repeats``, the candidates of each kernel
interleaved in one process so that they share the host's state, on the allocator `nmt`
runs on (``NMT_ALLOCATOR``, default TCMalloc when installed).

The label-smoothed cross-entropy on bf16 logits of one training batch's size (``--rows``
target tokens x ``--vocab``):

- ``torch``: ``F.cross_entropy(logits.float(), label_smoothing=eps, reduction="sum")``,
  what a training loop writes without thinking about it;
- ``exp``: the same chunked fused loss as ours, but with the softmax written by hand as
  ``z.sub_(lse).exp_()`` (and the log-sum-exp as ``amax``, ``sub_``, ``exp_``, ``sum``):
  the formulation `nmt` used before, kept here to show why it was replaced;
- ``nmt``: :func:`nmt.training.loss.smoothed_cross_entropy`, which goes through PyTorch's
  fused ``log_softmax`` / ``softmax`` kernels.

All three give the same loss (printed) and gradients within bf16 rounding.

Dropout (p = ``--dropout``) on a bf16 sublayer output of one batch's shape (``--rows``
tokens x ``--d-model``), alone and as the residual connection ``x + dropout(y)`` with
the fp32 residual stream ``x`` that autocast leaves:

- ``bool``: ``y * keep * scale`` with the bool mask of
  :func:`nmt.models.dropout.keep_mask` (the former formulation);
- ``nmt``: :func:`nmt.models.dropout.dropout` and :func:`nmt.models.dropout.add`.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from profile_train import host
from torch import Tensor

from nmt import allocator
from nmt.models.dropout import add, dropout, keep_mask
from nmt.training.loss import _chunks, _workspace, smoothed_cross_entropy

PAD = 1


class _ExpLoss(torch.autograd.Function):
    """The chunked loss with a hand-written exponential (the former formulation)."""

    @staticmethod
    def forward(ctx, logits, target, eps):
        keep = (target != PAD).float()  # (N,)
        safe = target.masked_fill(target == PAD, 0)  # (N,)
        vocab = logits.size(-1)
        lse = torch.empty(logits.size(0))  # (N,)
        total = torch.zeros(())
        work = _workspace(logits)  # (C, V)
        for rows in _chunks(logits):
            z = work[: rows.stop - rows.start].copy_(logits[rows])  # (C, V)
            z_t = z.gather(1, safe[rows, None]).squeeze(1)  # (C,)
            z_sum = z.sum(dim=-1)  # (C,)
            top = z.amax(dim=-1, keepdim=True)  # (C, 1)
            lse[rows] = z.sub_(top).exp_().sum(dim=-1).log_().add_(top.squeeze(1))  # (C,)
            per_row = lse[rows] - (1.0 - eps) * z_t - (eps / vocab) * z_sum  # (C,)
            total += (per_row * keep[rows]).sum()
        ctx.save_for_backward(logits, safe, keep, lse)
        ctx.eps = eps
        return total

    @staticmethod
    def backward(ctx, grad_out):
        logits, safe, keep, lse = ctx.saved_tensors
        eps, vocab = ctx.eps, logits.size(-1)
        grad = torch.empty_like(logits)  # (N, V)
        scale = keep * grad_out  # (N,)
        work = _workspace(logits)  # (C, V)
        for rows in _chunks(logits):
            g = work[: rows.stop - rows.start].copy_(logits[rows])  # (C, V)
            g.sub_(lse[rows, None]).exp_().sub_(eps / vocab)
            g.scatter_add_(1, safe[rows, None], g.new_full((g.size(0), 1), eps - 1.0))
            grad[rows] = g.mul_(scale[rows, None])
        return grad, None, None


def loss_candidates(eps: float) -> dict[str, Callable]:
    return {
        "torch": lambda z, t: F.cross_entropy(
            z.float(), t, ignore_index=PAD, label_smoothing=eps, reduction="sum"
        ),
        "exp": lambda z, t: _ExpLoss.apply(z, t, eps),
        "nmt": lambda z, t: smoothed_cross_entropy(z, t, PAD, eps),
    }


def bool_mask_dropout(y: Tensor, p: float) -> Tensor:
    """The former formulation: the bool mask multiplies the activations directly."""
    return y * keep_mask(y.shape, p) * (1.0 / (1.0 - p))


def dropout_candidates(p: float) -> dict[str, Callable]:
    return {
        "dropout bool": lambda x, y: bool_mask_dropout(y, p),
        "dropout nmt": lambda x, y: dropout(y, p, training=True),
        "residual bool": lambda x, y: x + bool_mask_dropout(y, p),
        "residual nmt": lambda x, y: add(x, y, p, training=True),
    }


def best_ms(candidates: dict[str, Callable], inputs: tuple[Tensor, ...], repeats: int) -> dict:
    """Best forward + backward milliseconds of each candidate, interleaved; each round
    starts with the next candidate, since the position in a round moved the figures."""
    leaves = [t for t in inputs if t.requires_grad]
    times: dict[str, list[float]] = {name: [] for name in candidates}
    names = list(candidates)
    for round_ in range(repeats + 1):  # the first round warms up
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            fn = candidates[name]
            start = time.perf_counter()
            fn(*inputs).sum().backward()
            times[name].append(time.perf_counter() - start)
            for t in leaves:
                t.grad = None
    return {name: min(t[1:]) * 1e3 for name, t in times.items()}


def loss_section(args: argparse.Namespace) -> dict:
    torch.manual_seed(0)
    logits = (torch.randn(args.rows, args.vocab) * 3).bfloat16().requires_grad_()
    target = torch.randint(0, args.vocab, (args.rows,))
    target[::7] = PAD
    losses, grads = {}, {}
    for name, fn in loss_candidates(args.eps).items():
        loss = fn(logits, target)
        loss.backward()
        losses[name], grads[name] = loss.item(), logits.grad.float()
        logits.grad = None
    best = best_ms(loss_candidates(args.eps), (logits, target), args.repeats)
    return {
        "shape": [args.rows, args.vocab],
        "best_ms": best,
        "speedup_vs_torch": {n: best["torch"] / ms for n, ms in best.items()},
        "loss": losses,
        "max_grad_diff_vs_torch": {
            n: (g - grads["torch"]).abs().max().item() for n, g in grads.items()
        },
    }


def dropout_section(args: argparse.Namespace) -> dict:
    torch.manual_seed(0)
    shape = (args.rows, args.d_model)
    x = torch.randn(shape, requires_grad=True)  # (N, D) fp32 residual stream
    y = torch.randn(shape).bfloat16().requires_grad_()  # (N, D) a sublayer's bf16 output
    best = best_ms(dropout_candidates(args.dropout), (x, y), args.repeats)
    return {
        "shape": list(shape),
        "p": args.dropout,
        "best_ms": best,
        "speedup": {
            kind: best[f"{kind} bool"] / best[f"{kind} nmt"] for kind in ("dropout", "residual")
        },
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rows", type=int, default=4096, help="target tokens (one batch)")
    p.add_argument("--vocab", type=int, default=8000)
    p.add_argument("--eps", type=float, default=0.1, help="label smoothing")
    p.add_argument("--d-model", type=int, default=256)
    p.add_argument("--dropout", type=float, default=0.3)
    p.add_argument("--threads", type=int, default=0, help="torch threads; 0 = default")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    allocator.use_configured()  # re-executes once, as the CLI does
    if args.threads:
        torch.set_num_threads(args.threads)
    result = {
        "host": host(),
        "threads": torch.get_num_threads(),
        "allocator": os.environ.get(allocator.APPLIED, "system"),
        "repeats": args.repeats,
        "loss": loss_section(args),
        "dropout": dropout_section(args),
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
