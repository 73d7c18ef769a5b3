"""Corpus-level translation metrics via sacrebleu (BLEU, chrF, TER).

Scores are only comparable across papers and runs when computed on detokenized text
with a known configuration, so every score is returned together with its sacrebleu
signature (tokenizer, casing, smoothing, version). Metric settings are sacrebleu's
defaults: cased BLEU with the ``13a`` tokenizer, chrF2, and TER.
"""

from __future__ import annotations

from collections.abc import Sequence

from sacrebleu.metrics import BLEU, CHRF, TER


def score(hyps: Sequence[str], refs: Sequence[str]) -> dict[str, float | int | str]:
    """Score detokenized hypotheses against one reference each.

    Returns ``n``, ``bleu``, ``bleu_signature``, ``bleu_detail`` (n-gram precisions and
    brevity penalty), ``bleu_lowercase`` (+ ``bleu_lowercase_signature``), ``chrf``,
    ``chrf_signature``, ``ter`` and ``ter_signature``.
    """
    hyps, refs = _checked(hyps, refs)
    bleu, bleu_lc, chrf, ter = BLEU(tokenize="13a"), BLEU(lowercase=True), CHRF(), TER()
    bleu_score = bleu.corpus_score(hyps, [refs])
    return {
        "n": len(hyps),
        "bleu": bleu_score.score,
        "bleu_signature": str(bleu.get_signature()),
        "bleu_detail": str(bleu_score),
        "bleu_lowercase": bleu_lc.corpus_score(hyps, [refs]).score,
        "bleu_lowercase_signature": str(bleu_lc.get_signature()),
        "chrf": chrf.corpus_score(hyps, [refs]).score,
        "chrf_signature": str(chrf.get_signature()),
        "ter": ter.corpus_score(hyps, [refs]).score,
        "ter_signature": str(ter.get_signature()),
    }


def _checked(hyps: Sequence[str], refs: Sequence[str]) -> tuple[list[str], list[str]]:
    """Reject misaligned or empty corpora up front: sacrebleu would either fail with an
    opaque error or, worse, score a shifted alignment."""
    if isinstance(hyps, str) or isinstance(refs, str):
        raise TypeError("hyps and refs must be sequences of sentences, not a single string")
    hyps, refs = list(hyps), list(refs)
    if len(hyps) != len(refs):
        raise ValueError(
            f"hypothesis/reference count mismatch: {len(hyps)} hypotheses, {len(refs)} references"
        )
    if not hyps:
        raise ValueError("nothing to score: 0 hypotheses and 0 references")
    return hyps, refs


def format_scores(scores: dict) -> str:
    """Render :func:`score` output as a short summary, signatures included for reporting."""
    lines = [
        f"BLEU       {scores['bleu']:6.2f}  {scores['bleu_signature']}",
        f"BLEU (lc)  {scores['bleu_lowercase']:6.2f}",
        f"chrF       {scores['chrf']:6.2f}  {scores['chrf_signature']}",
        f"TER        {scores['ter']:6.2f}  {scores['ter_signature']}",
    ]
    if "bleu_detail" in scores:
        lines.insert(1, f"  {scores['bleu_detail']}")
    if "n" in scores:
        lines.append(f"sentences  {scores['n']}")
    return "\n".join(lines)
