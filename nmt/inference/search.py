"""Greedy search, beam search and sampling over the backbone contract
(:class:`nmt.models.base.Seq2Seq`).

All of them only call ``encode``, ``decode_step`` and ``reorder_state``; they work for
every backbone. Sentences that are finished leave the batch (``reorder_state`` with the
indices of the rows still running), so a batch costs what its longest output costs only
for the rows still producing it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from nmt.errors import UsageError
from nmt.inference.guide import Guide, Prefixes, extended_limits
from nmt.inference.hypothesis import (
    Hypothesis,
    SearchLimits,
    attention_reported,
    force_eos,
    length_penalty,
)
from nmt.models.base import Seq2Seq, State

Picker = Callable[[Tensor], tuple[Tensor, Tensor]]  # log-probs (b, V) -> (b,) scores, tokens


def greedy_search(
    model: Seq2Seq,
    src: Tensor,
    src_mask: Tensor,
    limits: SearchLimits,
    keep_attention: bool = False,
    guides: list[Guide] | None = None,
) -> list[Hypothesis]:
    """Pick the most probable token at every step; one hypothesis per sentence.

    ``keep_attention``: each hypothesis also carries its attention weights, one row of
    source weights per output token (None for a backbone without attention).
    ``guides``: per sentence, a target prefix the output starts with (see guide.py).
    """
    with attention_reported(model, keep_attention):
        return _one_token_per_step(
            model, src, src_mask, limits, _most_probable, keep_attention, guides
        )


def _most_probable(log_probs: Tensor) -> tuple[Tensor, Tensor]:
    return log_probs.max(dim=-1)  # (b,), (b,)


@torch.no_grad()
def _one_token_per_step(
    model: Seq2Seq,
    src: Tensor,
    src_mask: Tensor,
    limits: SearchLimits,
    pick: Picker,
    keep_attention: bool = False,
    guides: list[Guide] | None = None,
) -> list[Hypothesis]:
    """Decode every row with one token per step chosen by ``pick`` (greedy or sampled).

    ``pick`` gets the step's log-probabilities (b, V) and returns the chosen tokens with
    their model log-probabilities; finished rows leave the batch.
    """
    batch = src.size(0)
    state = model.encode(src, src_mask)
    max_len = extended_limits(limits.max_lengths(src_mask).cpu(), guides, limits.cap)  # (B,)
    prefixes = Prefixes.build(guides, src.device) if guides else None
    alive = torch.arange(batch)  # sentence index of each running row
    prev = torch.full((batch,), limits.bos_id, dtype=torch.long, device=src.device)
    tokens: list[list[int]] = [[] for _ in range(batch)]
    scores = [0.0] * batch
    attn: list[list[list[float]]] = [[] for _ in range(batch)]
    for step in range(int(max_len.max())):
        log_probs, state = model.decode_step(prev, state)  # (b, V)
        if prefixes is not None:
            log_probs = prefixes.force(log_probs, step, alive)
        at_limit = (max_len[alive] <= step + 1).to(log_probs.device)  # (b,)
        log_probs = force_eos(log_probs, at_limit, limits.eos_id)
        best, next_tok = pick(log_probs)  # (b,), (b,)
        _record(alive, next_tok, best, state, tokens, scores, attn, keep_attention)
        running = next_tok != limits.eos_id  # (b,)
        if not running.any():
            break
        if not running.all():
            rows = running.nonzero().squeeze(1)  # (b',)
            state = model.reorder_state(state, rows)
            alive, next_tok = alive[rows.cpu()], next_tok[rows]
        prev = next_tok
    return [
        _greedy_hyp(tokens[i], scores[i], attn[i] if keep_attention else None, limits.eos_id)
        for i in range(batch)
    ]


def _record(
    alive: Tensor,
    next_tok: Tensor,
    best: Tensor,
    state: State,
    tokens: list,
    scores: list,
    attn: list,
    keep_attention: bool,
) -> None:
    toks, lps = next_tok.tolist(), best.tolist()
    weights = state.get("attention") if keep_attention else None
    for row, sent in enumerate(alive.tolist()):
        tokens[sent].append(toks[row])
        scores[sent] += lps[row]
        if weights is not None:
            attn[sent].append(weights[row].float().tolist())


def _greedy_hyp(toks: list[int], log_prob: float, attn: list | None, eos_id: int) -> Hypothesis:
    if toks and toks[-1] == eos_id:
        toks = toks[:-1]
    return Hypothesis(toks, log_prob, log_prob, attn)


# --- beam search ---------------------------------------------------------------------------------


@dataclass
class _Beams:
    """Book-keeping of a batched beam search: ``b`` running sentences x ``k`` beams."""

    sent: Tensor  # (b,) original sentence index of each running sentence
    scores: Tensor  # (b, k) cumulative log-probabilities of the running hypotheses
    tokens: Tensor  # (b, k, t) output tokens so far
    finished: list[list[Hypothesis]]  # per original sentence


@torch.no_grad()
def beam_search(
    model: Seq2Seq,
    src: Tensor,
    src_mask: Tensor,
    limits: SearchLimits,
    beam: int = 5,
    nbest: int = 1,
    alpha: float = 1.0,
    guides: list[Guide] | None = None,
) -> list[list[Hypothesis]]:
    """Batched beam search; returns the ``nbest`` best hypotheses of every sentence.

    Each step scores the ``2k`` best expansions of every sentence; those ending in EOS
    among the top ``k`` are finished (ranked by log-prob / lp, Wu et al. 2016 eq. 14),
    and the best ``k`` others continue. A sentence stops once it has ``k`` finished
    hypotheses or reaches its length limit. ``guides``: per sentence, a target prefix
    the output starts with (see guide.py).
    """
    batch, device = src.size(0), src.device
    state = model.encode(src, src_mask)
    state = model.reorder_state(state, torch.arange(batch, device=device).repeat_interleave(beam))
    max_len = extended_limits(limits.max_lengths(src_mask).cpu(), guides, limits.cap)  # (B,)
    prefixes = Prefixes.build(guides, device) if guides else None
    scores = torch.full((batch, beam), float("-inf"), device=device)
    scores[:, 0] = 0.0  # all beams start identical: expand only the first
    beams = _Beams(
        torch.arange(batch),
        scores,
        torch.empty(batch, beam, 0, dtype=torch.long, device=device),
        [[] for _ in range(batch)],
    )
    prev = torch.full((batch * beam,), limits.bos_id, dtype=torch.long, device=device)
    for step in range(int(max_len.max())):
        log_probs, state = model.decode_step(prev, state)  # (b*k, V)
        if prefixes is not None:
            log_probs = prefixes.force(log_probs, step, beams.sent.repeat_interleave(beam))
        at_limit = max_len[beams.sent] <= step + 1  # (b,)
        log_probs = force_eos(log_probs, at_limit.repeat_interleave(beam).to(device), limits.eos_id)
        cand_scores, origin, token = _top_candidates(beams.scores, log_probs, beam)
        _finish(beams, cand_scores, origin, token, beam, alpha, limits.eos_id)
        keep = _select_running(beams, cand_scores, origin, token, at_limit, limits.eos_id)
        if keep is None:
            break
        state = model.reorder_state(state, keep)
        prev = beams.tokens[:, :, -1].reshape(-1)  # (b*k,)
    # No finite hypothesis at all (a model whose weights went NaN): an empty output, so
    # that every input line still gets its output line.
    empty = Hypothesis([], float("-inf"), float("-inf"))
    return [sorted(h, key=lambda h: -h.score)[:nbest] or [empty] for h in beams.finished]


def _top_candidates(scores: Tensor, log_probs: Tensor, beam: int) -> tuple[Tensor, Tensor, Tensor]:
    """The 2k best (beam, token) expansions of each sentence: scores, origin beam, token."""
    b, vocab = scores.size(0), log_probs.size(-1)
    total = scores.unsqueeze(-1) + log_probs.view(b, beam, vocab)  # (b, k, V)
    cand_scores, flat = total.view(b, -1).topk(2 * beam, dim=-1)  # (b, 2k)
    return cand_scores, flat // vocab, flat % vocab


def _finish(
    beams: _Beams,
    cand_scores: Tensor,
    origin: Tensor,
    token: Tensor,
    beam: int,
    alpha: float,
    eos_id: int,
) -> None:
    """Move EOS expansions ranked within the top k of their sentence to ``finished``."""
    is_eos = (token[:, :beam] == eos_id) & torch.isfinite(cand_scores[:, :beam])  # (b, k)
    for row, col in is_eos.nonzero().tolist():
        sent = int(beams.sent[row])
        if len(beams.finished[sent]) >= beam:
            continue
        toks = beams.tokens[row, origin[row, col]].tolist()
        lp = float(cand_scores[row, col])
        beams.finished[sent].append(Hypothesis(toks, lp / length_penalty(len(toks) + 1, alpha), lp))


def _select_running(
    beams: _Beams, cand_scores: Tensor, origin: Tensor, token: Tensor, at_limit: Tensor, eos_id: int
) -> Tensor | None:
    """Keep the k best non-EOS expansions of unfinished sentences; return state rows to keep.

    Returns ``None`` when every sentence is finished (k hypotheses, or at its length limit).
    """
    beam = beams.scores.size(1)
    masked = cand_scores.masked_fill(token == eos_id, float("-inf"))  # (b, 2k)
    best, pos = masked.topk(beam, dim=-1)  # (b, k)
    src_beam, new_tok = origin.gather(1, pos), token.gather(1, pos)  # (b, k)
    full = torch.tensor([len(beams.finished[int(s)]) >= beam for s in beams.sent.tolist()])
    done = full | at_limit  # (b,)
    live = (~done).nonzero().squeeze(1)  # (b',)
    if live.numel() == 0:
        return None
    live_dev = live.to(best.device)
    src_beam, new_tok, best = src_beam[live_dev], new_tok[live_dev], best[live_dev]
    prev_tokens = beams.tokens[live_dev].gather(
        1, src_beam.unsqueeze(-1).expand(-1, -1, beams.tokens.size(-1))
    )  # (b', k, t)
    beams.tokens = torch.cat([prev_tokens, new_tok.unsqueeze(-1)], dim=-1)  # (b', k, t+1)
    beams.scores, beams.sent = best, beams.sent[live]
    return (live_dev.unsqueeze(1) * beam + src_beam).reshape(-1)  # (b'*k,) rows of the old state


# --- sampling ------------------------------------------------------------------------------------


# Beyond these, logits / T overflows or underflows float32 (inf, NaN probabilities).
MIN_TEMPERATURE, MAX_TEMPERATURE = 1e-3, 1e3


@dataclass(frozen=True)
class Sampling:
    """Draw each output token at random instead of searching for the most probable output.

    The next-token distribution is first sharpened or flattened by the ``temperature``
    (``softmax(log p / T)``, i.e. ``p ** (1/T)`` renormalised), then cut to its ``k`` most
    probable tokens (``topk``, Fan et al. 2018) or to the smallest set of most
    probable tokens whose probability reaches ``p`` (``topp``, nucleus sampling, Holtzman
    et al. 2020, sec. 3.1), and a token is drawn from what is left.
    """

    method: str  # topk | topp
    value: float  # k (a whole number >= 1) for topk, p in (0, 1] for topp
    temperature: float = 1.0

    def __post_init__(self) -> None:
        if self.method not in ("topk", "topp"):
            raise UsageError(f"sampling method must be topk or topp, not '{self.method}'")
        if not math.isfinite(self.value):
            raise UsageError(f"the sampling value must be a finite number, got {self.value:g}")
        if self.method == "topk" and (self.value < 1 or self.value != int(self.value)):
            raise UsageError(f"topk sampling needs a whole number k >= 1, got {self.value:g}")
        if self.method == "topp" and not 0 < self.value <= 1:
            raise UsageError(f"topp sampling needs p in (0, 1], got {self.value:g}")
        if not MIN_TEMPERATURE <= self.temperature <= MAX_TEMPERATURE:  # NaN too
            raise UsageError(
                f"the sampling temperature must be between {MIN_TEMPERATURE:g} and "
                f"{MAX_TEMPERATURE:g}, got {self.temperature:g}"
            )

    def truncate(self, logits: Tensor) -> Tensor:
        """Set the logits of the tokens that may not be drawn to -inf: (b, V) -> (b, V)."""
        if self.method == "topk":
            k = min(int(self.value), logits.size(-1))
            kth = logits.topk(k, dim=-1).values[:, -1:]  # (b, 1)
            return logits.masked_fill(logits < kth, float("-inf"))
        ranked, order = logits.sort(dim=-1, descending=True)  # (b, V)
        probs = ranked.softmax(dim=-1)  # (b, V)
        mass_above = probs.cumsum(dim=-1) - probs  # (b, V) probability of the better tokens
        drop = (mass_above >= self.value).scatter(1, order, mass_above >= self.value)  # (b, V)
        return logits.masked_fill(drop, float("-inf"))


def _sampler(sampling: Sampling, generator: torch.Generator | None) -> Picker:
    """A :data:`Picker` that draws the token; it returns the model's own log-probability of
    the token (before temperature and truncation), so scores stay comparable to search."""

    def pick(log_probs: Tensor) -> tuple[Tensor, Tensor]:
        logits = sampling.truncate(log_probs / sampling.temperature)  # (b, V)
        probs = logits.softmax(dim=-1)  # (b, V)
        token = torch.multinomial(probs, 1, generator=generator)  # (b, 1)
        return log_probs.gather(1, token).squeeze(1), token.squeeze(1)  # (b,), (b,)

    return pick


@torch.no_grad()
def sample(
    model: Seq2Seq,
    src: Tensor,
    src_mask: Tensor,
    limits: SearchLimits,
    sampling: Sampling,
    nbest: int = 1,
    alpha: float = 1.0,
    generator: torch.Generator | None = None,
) -> list[list[Hypothesis]]:
    """``nbest`` independent samples of every sentence, best first.

    Samples may repeat. Each one's ``log_prob`` is the model's log-probability of the
    sampled output and its ``score`` that divided by the GNMT length penalty (as in beam
    search), which orders the list. The draws come from ``generator``, so a seeded
    generator gives the same samples for the same batches.
    """
    rows = torch.arange(src.size(0), device=src.device).repeat_interleave(nbest)  # (B*n,)
    drawn = _one_token_per_step(
        model, src[rows], src_mask[rows], limits, _sampler(sampling, generator)
    )
    for h in drawn:
        h.score = h.log_prob / length_penalty(len(h.tokens) + 1, alpha)
    groups = [drawn[i : i + nbest] for i in range(0, len(drawn), nbest)]
    return [sorted(group, key=lambda h: -h.score) for group in groups]


def search(
    model: Seq2Seq,
    src: Tensor,
    src_mask: Tensor,
    limits: SearchLimits,
    beam: int = 1,
    nbest: int = 1,
    alpha: float = 1.0,
    sampling: Sampling | None = None,
    generator: torch.Generator | None = None,
    guides: list[Guide] | None = None,
) -> list[list[Hypothesis]]:
    """Sampling when ``sampling`` is given; else greedy when ``beam == 1`` (and one best),
    beam search otherwise. ``guides`` (target prefixes) apply to greedy and beam search."""
    if sampling is not None:
        return sample(model, src, src_mask, limits, sampling, nbest, alpha, generator)
    if beam == 1 and nbest == 1:
        return [[h] for h in greedy_search(model, src, src_mask, limits, guides=guides)]
    return beam_search(model, src, src_mask, limits, beam, nbest, alpha, guides)
