"""What a user may impose on one sentence's output: a target prefix and lexical constraints.

A :class:`Guide` travels with each input line from the file readers (or the server) to the
search. The prefix is enforced here, by :meth:`Prefixes.force`, a filter over the
log-probabilities of one decoding step that any search can apply: while a row's prefix
lasts, its only allowed token is the next prefix token (with the model's own
log-probability, so scores stay those of the whole output). The prefix is thus
force-decoded through ``decode_step`` like any other output, and the search continues from
it. Constraints are enforced by :mod:`nmt.inference.constraints`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class Guide:
    """Target token ids one sentence's output must start with, and must contain."""

    prefix: tuple[int, ...] = ()  # the output starts with these ids (no EOS)
    constraints: tuple[tuple[int, ...], ...] = ()  # each a contiguous phrase of the output

    @property
    def constraint_tokens(self) -> int:
        return sum(len(c) for c in self.constraints)


NO_GUIDE = Guide()


@dataclass
class Prefixes:
    """The prefixes of a batch as one padded tensor, for :meth:`force`."""

    tokens: Tensor  # (B, P) prefix ids, -1 past each prefix's end
    lengths: Tensor  # (B,) on the CPU

    @classmethod
    def build(cls, guides: list[Guide], device: torch.device) -> Prefixes | None:
        """``None`` when no sentence of the batch has a prefix (nothing to force)."""
        longest = max((len(g.prefix) for g in guides), default=0)
        if longest == 0:
            return None
        tokens = torch.full((len(guides), longest), -1, dtype=torch.long)
        for row, g in enumerate(guides):
            tokens[row, : len(g.prefix)] = torch.tensor(g.prefix, dtype=torch.long)
        lengths = torch.tensor([len(g.prefix) for g in guides])
        return cls(tokens.to(device), lengths)

    def force(self, log_probs: Tensor, step: int, sent: Tensor) -> Tensor:
        """Allow only the prefix token at ``step`` for rows still inside their prefix.

        ``log_probs``: (R, V) of the rows; ``sent``: (R,) the batch sentence of each row.
        """
        if step >= self.tokens.size(1):
            return log_probs
        wanted = self.tokens[sent.to(self.tokens.device), step]  # (R,)
        inside = wanted >= 0  # (R,)
        if not inside.any():
            return log_probs
        index = wanted.clamp(min=0).unsqueeze(1)  # (R, 1)
        only = torch.full_like(log_probs, float("-inf")).scatter(
            1, index, log_probs.gather(1, index)
        )  # (R, V)
        return torch.where(inside.unsqueeze(1), only, log_probs)  # (R, V)


def extended_limits(max_len: Tensor, guides: list[Guide] | None, cap: int = 0) -> Tensor:
    """Length bounds (B,) raised by what each guide adds to its output: the prefix and the
    constraints' tokens, so that neither crowds out the translation itself; still at most
    ``cap - 1`` (the model's positions) when ``cap > 1``."""
    if not guides:
        return max_len
    extra = torch.tensor([len(g.prefix) + g.constraint_tokens for g in guides])
    longer = max_len + extra.to(max_len.device)  # (B,)
    return longer.clamp(max=cap - 1) if cap > 1 else longer
