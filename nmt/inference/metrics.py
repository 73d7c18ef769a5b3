"""Corpus-level translation metrics via sacrebleu (BLEU, chrF, TER).

Scores are only comparable across papers and runs when computed on detokenized text
with a known configuration, so every score is returned together with its sacrebleu
signature (tokenizer, casing, smoothing, version). Metric settings are sacrebleu's
defaults: cased BLEU with the ``13a`` tokenizer, chrF2, and TER.
"""

from __future__ import annotations

from collections.abc import Sequence

from sacrebleu.metrics import BLEU, CHRF, TER

from nmt.textio import CorpusError


def score(
    hyps: Sequence[str], refs: Sequence[str], names: tuple[str, str] | None = None
) -> dict[str, float | int | str]:
    """Score detokenized hypotheses against one reference each.

    Returns ``n``, ``bleu``, ``bleu_signature``, ``bleu_detail`` (n-gram precisions and
    brevity penalty), ``bleu_lowercase`` (+ ``bleu_lowercase_signature``), ``chrf``,
    ``chrf_signature``, ``ter`` and ``ter_signature``. ``names`` (of the hypothesis and
    reference files) makes the errors about misaligned or empty input name them.
    """
    if isinstance(hyps, str) or isinstance(refs, str):
        raise TypeError("hyps and refs must be sequences of sentences, not a single string")
    hyps, refs = list(hyps), list(refs)
    check_aligned(len(hyps), len(refs), names)
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


def check_aligned(n_hyps: int, n_refs: int, names: tuple[str, str] | None = None) -> None:
    """Reject misaligned or empty corpora up front: sacrebleu would either fail with an
    opaque error or, worse, score a shifted alignment. ``names``: the two files."""
    if n_hyps != n_refs:
        if names:
            raise CorpusError(
                f"{names[0]} has {n_hyps} lines but {names[1]} has {n_refs}: hypotheses "
                "and references must align line by line"
            )
        raise CorpusError(
            f"hypothesis/reference count mismatch: {n_hyps} hypotheses, {n_refs} references"
        )
    if not n_hyps:
        if names:
            raise CorpusError(f"{names[1]} is empty: there is nothing to score")
        raise CorpusError("nothing to score: 0 hypotheses and 0 references")


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
