"""Corpus-level translation metrics via sacrebleu (BLEU, chrF, TER).

Scores are only comparable across papers and runs when computed on detokenized text
with a known configuration, so every score is returned together with its sacrebleu
signature (tokenizer, casing, smoothing, version). Metric settings are sacrebleu's
defaults: cased BLEU with the ``13a`` tokenizer, chrF2, and TER.

``tokenize`` picks BLEU's tokenization: one of sacreBLEU's (``13a``, ``intl``, ``char``,
``none``), or ``moses-lc``, the scores most Multi30k papers report (multi-bleu.perl on
lowercased text that the Moses tokenizer split, hyphens too: ``well @-@ known``). That one
runs sacremoses' port of the Moses tokenizer (``aggressive_dash_splits``) over hypotheses
and references, lowercases them and scores with sacreBLEU's ``tokenize='none'``; its
signature says so (``tok:none`` and ``+moses-lc-aggressive``, the language, sacremoses'
version). Such scores are not comparable with detokenized sacreBLEU (Post 2018).
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib.metadata import version

from sacrebleu.metrics import BLEU, CHRF, TER

from nmt.errors import UsageError
from nmt.textio import CorpusError

TOKENIZE = ("13a", "intl", "char", "none", "moses-lc")


def score(
    hyps: Sequence[str],
    refs: Sequence[str],
    names: tuple[str, str] | None = None,
    tokenize: str = "13a",
    lang: str | None = None,
) -> dict[str, float | int | str]:
    """Score detokenized hypotheses against one reference each.

    Returns ``n``, ``bleu``, ``bleu_signature``, ``bleu_detail`` (n-gram precisions and
    brevity penalty), ``bleu_lowercase`` (+ ``bleu_lowercase_signature``), ``chrf``,
    ``chrf_signature``, ``ter`` and ``ter_signature``. ``names`` (of the hypothesis and
    reference files) makes the errors about misaligned or empty input name them.
    ``tokenize``: BLEU's tokenization (see the module); ``lang``: the language of the
    text, which ``moses-lc`` needs (the Moses tokenizer's rules).
    """
    if isinstance(hyps, str) or isinstance(refs, str):
        raise TypeError("hyps and refs must be sequences of sentences, not a single string")
    hyps, refs = list(hyps), list(refs)
    check_aligned(len(hyps), len(refs), names)
    bleu_score, signature = _bleu(hyps, refs, tokenize, lang)
    bleu_lc, chrf, ter = BLEU(lowercase=True), CHRF(), TER()
    return {
        "n": len(hyps),
        "bleu": bleu_score.score,
        "bleu_signature": signature,
        "bleu_detail": str(bleu_score),
        "bleu_lowercase": bleu_lc.corpus_score(hyps, [refs]).score,
        "bleu_lowercase_signature": str(bleu_lc.get_signature()),
        "chrf": chrf.corpus_score(hyps, [refs]).score,
        "chrf_signature": str(chrf.get_signature()),
        "ter": ter.corpus_score(hyps, [refs]).score,
        "ter_signature": str(ter.get_signature()),
    }


def _bleu(hyps: list[str], refs: list[str], tokenize: str, lang: str | None) -> tuple:
    """(sacreBLEU's BLEUScore, signature) with the ``tokenize`` of :func:`score`."""
    check_tokenize(tokenize)
    if tokenize != "moses-lc":
        bleu = BLEU(tokenize=tokenize)
        return bleu.corpus_score(hyps, [refs]), str(bleu.get_signature())
    if not lang:
        raise UsageError("--tokenize moses-lc needs the language of the text: give --tgt-lang")
    bleu = BLEU(tokenize="none", lowercase=True, force=True)  # tokenized on purpose: no warning
    scored = bleu.corpus_score(moses_lc(hyps, lang), [moses_lc(refs, lang)])
    moses = f"+moses-lc-aggressive|lang:{lang}|sacremoses:{version('sacremoses')}"
    return scored, f"{bleu.get_signature()}{moses}"


def check_tokenize(tokenize: str) -> None:
    """Refuse a BLEU tokenization :func:`score` does not know, naming the flag."""
    if tokenize not in TOKENIZE:
        raise UsageError(f"--tokenize must be one of {', '.join(TOKENIZE)}, not '{tokenize}'")


def moses_lc(lines: list[str], lang: str) -> list[str]:
    """Lines as Moses' ``tokenizer.perl -a -l LANG | lowercase.perl`` leaves them: split
    into tokens with hyphens split too (``well @-@ known``), no XML escaping (a token for
    a token, so BLEU is unchanged), lowercased."""
    from sacremoses import MosesTokenizer  # loads its rules: only when asked for

    moses = MosesTokenizer(lang=lang)
    return [
        moses.tokenize(line, aggressive_dash_splits=True, return_str=True, escape=False).lower()
        for line in lines
    ]


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
