"""Lexically constrained beam search with dynamic beam allocation (DBA).

Every hypothesis tracks which of its sentence's constraints (target token sequences, see
:mod:`nmt.inference.glossary`) it has produced, and how far it is into the one it is
producing now (:class:`Progress`; a token off the phrase abandons it, as in Post & Vilar
2018, sec. 3). Each step, every sentence considers three sets of candidates (sec. 3.2):

1. the ``2k`` best expansions overall (what unconstrained beam search looks at);
2. for every hypothesis, each token that advances a constraint (the next token of the
   phrase in progress, or the first token of any unmet one);
3. for every hypothesis, its single best next token.

Candidates are grouped into *banks* by how many constraint tokens they have met, and the
``k`` beam slots are shared out over banks (sec. 3.3): as in the vectorised DBA of Hu et al.
(2019, sec. 3.2), candidates are ranked by their rank within their bank, ties to the bank
with more progress, so a full beam holds about ``k / (C + 1)`` hypotheses of each of the
``C + 1`` progress levels and unused slots go to the next candidates in that order. This
keeps hypotheses that have placed a constraint early (and scored worse for it) alive
next to those that have not placed it yet.

EOS is allowed only to hypotheses that met every constraint, and right after a phrase
is complete no piece may continue its last word (``glue``), so a term stays a word. The
length bound is raised by the constraints' total length; at the bound only complete
hypotheses may end, and a sentence left without any finished hypothesis falls back to
its best running one with the missing constraints appended (so every output contains
every constraint).
Everything here uses only ``encode``, ``decode_step`` and ``reorder_state``: it works for
every backbone, ensembles too, and for n-best lists.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch
from torch import Tensor

from nmt.inference.guide import Guide, Prefixes, extended_limits
from nmt.inference.search import Hypothesis, SearchLimits, force_eos, length_penalty
from nmt.models.base import Seq2Seq

Phrases = tuple[tuple[int, ...], ...]


@dataclass(frozen=True)
class Progress:
    """How far one hypothesis is through its sentence's constraints (immutable)."""

    met: tuple[bool, ...]  # per constraint: produced already
    current: int = -1  # the constraint being produced now (-1: none)
    depth: int = 0  # its tokens produced so far
    ended: bool = False  # the last token completed a phrase (the next must not glue on)

    @classmethod
    def start(cls, phrases: Phrases) -> Progress:
        return cls(tuple(False for _ in phrases))

    def bank(self, phrases: Phrases) -> int:
        """Constraint tokens met: complete phrases plus the one in progress."""
        return sum(len(p) for p, done in zip(phrases, self.met) if done) + self.depth

    def complete(self) -> bool:
        return all(self.met)

    def advancing(self, phrases: Phrases) -> set[int]:
        """Tokens that make progress: the next of the current phrase, or a first token."""
        if self.current >= 0:
            return {phrases[self.current][self.depth]}
        return {p[0] for p, done in zip(phrases, self.met) if not done}

    def advance(self, token: int, phrases: Phrases) -> Progress:
        """The progress after ``token``; a token off the current phrase abandons it."""
        if self.current >= 0 and phrases[self.current][self.depth] == token:
            if self.depth + 1 < len(phrases[self.current]):
                return replace(self, depth=self.depth + 1)
            met = list(self.met)
            met[self.current] = True
            return Progress(tuple(met), ended=True)
        fresh = Progress(self.met)
        for i, (p, done) in enumerate(zip(phrases, fresh.met)):
            if not done and p[0] == token:
                return fresh._begin(i, phrases)
        return fresh

    def _begin(self, i: int, phrases: Phrases) -> Progress:
        if len(phrases[i]) > 1:
            return replace(self, current=i, depth=1)
        met = list(self.met)
        met[i] = True
        return Progress(tuple(met), ended=True)

    def missing(self, phrases: Phrases) -> list[int]:
        """Tokens that complete the hypothesis: the rest of the current phrase, then every
        other unmet phrase (the last-resort ending at the length bound)."""
        tokens: list[int] = []
        if self.current >= 0:
            tokens += phrases[self.current][self.depth :]
        for i, (p, done) in enumerate(zip(phrases, self.met)):
            if not done and i != self.current:
                tokens += p
        return tokens


@dataclass
class _Sentence:
    """One sentence's beam: its hypotheses' tokens, scores and constraint progress."""

    phrases: Phrases
    tokens: list[list[int]]  # (k, t)
    scores: list[float]  # (k,) cumulative log-probabilities (-inf: an empty slot)
    progress: list[Progress]  # (k,)
    finished: list[Hypothesis] = field(default_factory=list)
    origins: list[int] = field(default_factory=list)  # (k,) beam each hypothesis came from
    completed: list[Hypothesis] = field(default_factory=list)  # last resorts, see _completed


@dataclass
class _Candidate:
    beam: int
    token: int
    score: float
    progress: Progress


@torch.no_grad()
def constrained_beam_search(
    model: Seq2Seq,
    src: Tensor,
    src_mask: Tensor,
    limits: SearchLimits,
    guides: list[Guide],
    beam: int = 5,
    nbest: int = 1,
    alpha: float = 1.0,
    glue: Tensor | None = None,
) -> list[list[Hypothesis]]:
    """Beam search whose outputs contain every constraint of their sentence's guide (and
    start with its prefix); the ``nbest`` best finished hypotheses of every sentence.

    ``glue``: (V,) True for tokens that continue the word before them (pieces without
    the word-initial ``▁``; see :func:`nmt.inference.glossary.word_continuations`); they
    may not follow a completed phrase, so a term stays a word of its own ("chair", not
    "chairs"). None: no such rule.
    """
    batch, device = src.size(0), src.device
    state = model.encode(src, src_mask)
    state = model.reorder_state(state, torch.arange(batch, device=device).repeat_interleave(beam))
    max_len = extended_limits(limits.max_lengths(src_mask).cpu(), guides, limits.cap)  # (B,)
    prefixes = Prefixes.build(guides, device)
    sents = [_start(g.constraints, beam) for g in guides]
    alive = list(range(batch))  # sentence of each running block of k rows
    prev = torch.full((batch * beam,), limits.bos_id, dtype=torch.long, device=device)
    for step in range(int(max_len.max())):
        log_probs, state = model.decode_step(prev, state)  # (b*k, V)
        rows_sent = torch.tensor(alive).repeat_interleave(beam)  # (b*k,)
        if prefixes is not None:
            log_probs = prefixes.force(log_probs, step, rows_sent)
        at_limit = max_len[rows_sent] <= step + 1  # (b*k,) on the CPU
        log_probs = force_eos(log_probs, at_limit.to(device), limits.eos_id)  # (b*k, V)
        log_probs = _eos_only_when_complete(log_probs, [sents[s] for s in alive], limits.eos_id)
        if glue is not None:
            log_probs = _no_glue_after_phrases(log_probs, [sents[s] for s in alive], glue)
        candidates = _candidates(log_probs, [sents[s] for s in alive], beam)
        keep, next_tokens = [], []
        for row, s in enumerate(alive):
            limit_reached = bool(at_limit[row * beam])  # a CPU tensor: no device sync
            done = _step_sentence(
                sents[s], candidates[row], beam, alpha, limits.eos_id, limit_reached
            )
            if not done and not _settled(sents[s], nbest, alpha):
                keep.append(row)
                next_tokens += [t[-1] for t in sents[s].tokens]
        if not keep:
            break
        alive = [alive[row] for row in keep]
        index = torch.tensor([r * beam + j for r in keep for j in range(beam)], device=device)
        state = model.reorder_state(state, _origins(index, [sents[s] for s in alive], beam))
        prev = torch.tensor(next_tokens, dtype=torch.long, device=device)  # (b'*k,)
    return [_best(s, nbest, alpha) for s in sents]


def _start(constraints: Phrases, beam: int) -> _Sentence:
    scores = [0.0] + [float("-inf")] * (beam - 1)  # identical beams: expand only the first
    start = Progress.start(constraints)
    return _Sentence(constraints, [[] for _ in range(beam)], scores, [start] * beam)


def _eos_only_when_complete(log_probs: Tensor, sents: list[_Sentence], eos_id: int) -> Tensor:
    """Rows whose hypothesis still misses a constraint may not end (EOS -> -inf)."""
    incomplete = [not p.complete() for s in sents for p in s.progress]
    if any(incomplete):
        mask = torch.tensor(incomplete, device=log_probs.device)  # (b*k,)
        log_probs = log_probs.clone()
        log_probs[mask, eos_id] = float("-inf")
    return log_probs


def _no_glue_after_phrases(log_probs: Tensor, sents: list[_Sentence], glue: Tensor) -> Tensor:
    """Rows whose last token completed a phrase may not go on with a word continuation."""
    ended = [p.ended for s in sents for p in s.progress]
    if any(ended):
        rows = torch.tensor(ended, device=log_probs.device).unsqueeze(1)  # (b*k, 1)
        banned = rows & glue.to(log_probs.device).unsqueeze(0)  # (b*k, V)
        log_probs = log_probs.masked_fill(banned, float("-inf"))
    return log_probs


def _candidates(log_probs: Tensor, sents: list[_Sentence], beam: int) -> list[list[_Candidate]]:
    """Per sentence: the top 2k expansions, every constraint-advancing token of every
    hypothesis, and every hypothesis's best token (Post & Vilar 2018, sec. 3.2)."""
    b, vocab = len(sents), log_probs.size(-1)
    scores = torch.tensor([x for s in sents for x in s.scores], device=log_probs.device)
    total = (scores.unsqueeze(1) + log_probs).view(b, beam, vocab)  # (b, k, V)
    top, flat = total.view(b, -1).topk(min(2 * beam, beam * vocab), dim=-1)  # (b, 2k)
    best_score, best_tok = total.max(dim=-1)  # (b, k), (b, k)
    wanted = [(r, j, t) for r, s in enumerate(sents) for j in range(beam) for t in _advancing(s, j)]
    picked = [0.0] * len(wanted)
    if wanted:
        rows, beams, toks = (torch.tensor(x, device=total.device) for x in zip(*wanted))
        picked = total[rows, beams, toks].tolist()  # (n,)
    found: list[dict[tuple[int, int], float]] = [{} for _ in sents]
    for r, (sc, fl) in enumerate(zip(top.tolist(), flat.tolist())):
        found[r].update({(f // vocab, f % vocab): x for x, f in zip(sc, fl)})
    for r, (sc, tk) in enumerate(zip(best_score.tolist(), best_tok.tolist())):
        found[r].update({(j, t): x for j, (x, t) in enumerate(zip(sc, tk))})
    for (r, j, t), x in zip(wanted, picked):
        found[r][(j, t)] = x
    return [
        [
            _Candidate(j, t, x, s.progress[j].advance(t, s.phrases))
            for (j, t), x in found[r].items()
            if x != float("-inf")
        ]
        for r, s in enumerate(sents)
    ]


def _advancing(s: _Sentence, j: int) -> set[int]:
    if s.scores[j] == float("-inf") or not s.phrases:
        return set()
    return s.progress[j].advancing(s.phrases)


def _allocate(cands: list[_Candidate], phrases: Phrases) -> list[_Candidate]:
    """Candidates in DBA order: rank within their bank, then more progress first (Hu et al.
    2019, sec. 3.2), so the beam's slots are shared out over the progress levels."""
    by_bank: dict[int, list[_Candidate]] = {}
    for c in sorted(cands, key=lambda c: -c.score):
        by_bank.setdefault(c.progress.bank(phrases), []).append(c)
    ranked = [(rank, -bank, c) for bank, cs in by_bank.items() for rank, c in enumerate(cs)]
    return [c for _, _, c in sorted(ranked, key=lambda x: (x[0], x[1], -x[2].score))]


def _step_sentence(
    s: _Sentence, cands: list[_Candidate], beam: int, alpha: float, eos_id: int, at_limit: bool
) -> bool:
    """Finish the EOS candidates among the first k in DBA order, keep the k first others.
    Returns whether the sentence is done."""
    ordered = _allocate(cands, s.phrases)
    for c in ordered[:beam]:
        if c.token == eos_id and len(s.finished) < beam:
            toks, lp = s.tokens[c.beam], c.score
            s.finished.append(Hypothesis(list(toks), lp / length_penalty(len(toks) + 1, alpha), lp))
    going = [c for c in ordered if c.token != eos_id][:beam]
    if at_limit or not going:
        s.completed = _completed(s, alpha, beam)
        return True
    if len(s.finished) >= beam:
        return True
    s.origins = [c.beam for c in going] + [0] * (beam - len(going))
    dead = _Candidate(0, eos_id, float("-inf"), going[0].progress)  # fills an empty slot
    padded = going + [dead] * (beam - len(going))
    s.tokens = [s.tokens[c.beam] + [c.token] for c in padded]
    s.scores = [c.score for c in padded]
    s.progress = [c.progress for c in padded]
    return False


def _settled(s: _Sentence, nbest: int, alpha: float) -> bool:
    """Early stop: ``nbest`` hypotheses are finished and the worst of them ranks above
    every running hypothesis as it stands (log-prob / length penalty of its length so
    far), the test of Hugging Face's beam search without ``early_stopping``. DBA fills
    the ``k`` finished places slowly, so waiting for all of them would keep sentences
    (and their model calls) in the batch long after their result is clear."""
    if len(s.finished) < nbest:
        return False
    worst = sorted(h.score for h in s.finished)[-nbest]
    running = [
        x / length_penalty(len(t) + 1, alpha)
        for x, t in zip(s.scores, s.tokens)
        if x != float("-inf")
    ]
    return not running or worst >= max(running)


def _origins(index: Tensor, sents: list[_Sentence], beam: int) -> Tensor:
    """State rows to keep: for each kept block, the origin beam of each new hypothesis."""
    blocks = index.view(-1, beam)[:, :1]  # (b', 1) first state row of each kept block
    origins = torch.tensor([s.origins for s in sents], device=index.device)  # (b', k)
    return (blocks + origins).reshape(-1)  # (b'*k,)


def _completed(s: _Sentence, alpha: float, count: int) -> list[Hypothesis]:
    """Last resort at the length bound: up to ``count`` of the best running hypotheses
    that still miss constraints, with the missing constraint tokens appended (scored as
    the hypothesis was: they were not searched). They only fill n-best places that no
    finished hypothesis takes."""
    order = sorted(range(len(s.scores)), key=lambda j: -s.scores[j])
    live = [j for j in order if s.scores[j] != float("-inf") and not s.progress[j].complete()]
    if not s.finished and not live:
        live = order[:1]  # nothing searched at all: the constraints alone
    hyps = []
    for j in live[: max(count, 0)]:
        toks = s.tokens[j] + s.progress[j].missing(s.phrases)
        lp = s.scores[j] if s.scores[j] != float("-inf") else 0.0
        hyps.append(Hypothesis(toks, lp / length_penalty(len(toks) + 1, alpha), lp))
    return hyps


def _best(s: _Sentence, nbest: int, alpha: float) -> list[Hypothesis]:
    """The ``nbest`` best finished hypotheses, then last resorts for the places left."""
    if not s.finished and not s.completed:
        s.completed = _completed(s, alpha, nbest)
    found = sorted(s.finished, key=lambda h: -h.score)[:nbest]
    return found + sorted(s.completed, key=lambda h: -h.score)[: nbest - len(found)]
